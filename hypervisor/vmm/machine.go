package vmm

import (
	"io"

	"vsh/hypervisor"
)

// ExitKind says why a machine stopped running.
type ExitKind int

// Exit kinds.
const (
	ExitPoweroff  ExitKind = iota // the guest powered off
	ExitReboot                    // the guest reset itself (reboot, triple fault)
	ExitCrash                     // the guest panicked or the engine hit an unrecoverable guest error
	ExitDestroyed                 // the VMM stopped it (destroy)
)

// Exit is how and why a machine stopped.
type Exit struct {
	Kind   ExitKind
	Detail string
}

// Machine is a built VM as the VMM process drives it. Build returns one
// per boot; a reboot builds a fresh one.
type Machine interface {
	// Start runs the vCPUs.
	Start() error
	// Wait blocks until the machine stops.
	Wait() Exit
	// Pause stops the vCPUs without losing state; Resume restarts them.
	Pause() error
	Resume() error
	// RequestShutdown asks the guest to power itself off.
	RequestShutdown() error
	// Stop ends the machine now; Wait then reports ExitDestroyed.
	Stop()
	// ConsoleInput delivers bytes typed on the console to the guest.
	ConsoleInput(p []byte)
	// Stats returns the machine's counters.
	Stats() Stats
	// SetMemory changes the balloon target.
	SetMemory(kib uint64) error
	// MemoryStats returns the memory statistics (dommemstat); refresh
	// asks the guest for a new report first.
	MemoryStats(refresh bool) (MemoryStats, error)
	// NICs returns the network interfaces with their counters.
	NICs() []NICStatus
	// SetLink sets the link state of the interface with that MAC address.
	SetLink(mac string, up bool) error
	// Close releases the machine's resources (memory, fds, devices).
	Close() error
}

// Builder assembles a machine from its configuration; console receives
// everything the guest writes to its serial console.
type Builder func(cfg *hypervisor.Config, console io.Writer) (Machine, error)
