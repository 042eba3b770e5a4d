package local

import (
	"io"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// Engine runs domains. The local driver owns definitions and state
// records; the engine owns the VMM processes. hypervisor/vmm implements it
// and installs itself by setting DefaultEngine from an init function (or
// cmd/vsh does), so the driver has no import of the engine.
//
// Every method gets the domain's run directory, <run>/domains/<name>/,
// which exists, is private (0700) and belongs to that one domain while it
// runs: the engine keeps its control socket, console log and its own state
// record there. The driver keeps state.json and live.xml in the same
// directory; the engine must not touch those two names. The directory is
// removed when the domain stops.
//
// Calls for one domain are serialised by the driver's state lock, but
// different processes (two shells) may call Status for the same domain at
// once, so Status must only read.
type Engine interface {
	// Start launches the VMM process for dom, detached from the caller
	// (it must survive the shell's exit), and returns once the VMM has
	// accepted the configuration (not when the guest has booted). paused
	// leaves the vCPUs stopped (start --paused). Errors should be
	// *driver.Error values whose text virsh users will understand, e.g.
	// "unsupported configuration: <graphics type='spice'> at vm.xml:40".
	// The engine must not modify dom. resolve finds what the domain
	// names in this connection: the file
	// behind a <disk type='volume'>, the bridge of an <interface
	// type='network'>.
	Start(dom *domxml.Domain, runDir string, paused bool, resolve Resolver) (pid int, err error)

	// Status reports the domain's state. When the VMM process is gone it
	// returns StateShutoff with the reason it recorded (shutdown,
	// destroyed, crashed...), or StateCrashed / ShutoffCrashed when it
	// died without recording one; it never reports a dead VMM as running.
	Status(name, runDir string) (EngineStatus, error)

	// Control performs op on the running VMM. OpDestroy returns only once
	// the process is gone; the others return once the VMM has accepted the
	// request (a guest shutdown completes later and is seen by Status).
	Control(name, runDir string, op Op) error
}

// ConsoleEngine is implemented by engines that attach to a domain's
// console; the local driver then implements driver.ConsoleOpener.
type ConsoleEngine interface {
	// Console attaches to a running domain's console or serial device
	// devname ("" for the first); force steals a session another client
	// holds.
	Console(name, runDir, devname string, force bool) (io.ReadWriteCloser, error)
}

// Op is a control operation on a running domain.
type Op string

// Control operations.
const (
	OpPause    Op = "pause"    // suspend: stop the vCPUs
	OpResume   Op = "resume"   // resume: restart the vCPUs
	OpShutdown Op = "shutdown" // ask the guest to power off
	OpReboot   Op = "reboot"   // ask the guest to reboot
	OpReset    Op = "reset"    // hard reset, like the reset button
	OpDestroy  Op = "destroy"  // kill the VMM at once
)

// Resolver looks up, at start, the host objects a domain refers to by
// name in the connection that starts it.
type Resolver struct {
	// Volume returns the path and format of a volume in a pool.
	Volume domxml.VolumeResolver
	// NetworkBridge returns the bridge of an active network; an inactive
	// or unknown network is an error.
	NetworkBridge func(network string) (bridge string, err error)
}

// EngineStatus is what the engine knows about a domain.
type EngineStatus struct {
	State  driver.DomainState
	Reason driver.StateReason
	// PID is the VMM process, 0 when gone.
	PID int
	// CPUTime is the vCPU threads' total CPU time.
	CPUTime time.Duration
	// MemoryKiB is the guest's current (balloon) memory; 0 when unknown.
	MemoryKiB uint64
}

// NetworkBackend sets up what an active network is on the host: bridge,
// NAT rules, DHCP/DNS. hypervisor/network implements it and installs it
// by setting DefaultNetworkBackend. runDir is <run>/networks/<name>/, private to the
// network while it is active. It is installed by setting
// DefaultNetworkBackend.
type NetworkBackend interface {
	// Start creates the network's bridge, addresses, firewall rules and
	// DHCP server.
	Start(net *domxml.Network, runDir string) error
	// Stop tears down what Start created; it must succeed on a half-set-up
	// network.
	Stop(net *domxml.Network, runDir string) error
	// Leases returns the DHCP leases, filtered by mac when not "".
	Leases(net *domxml.Network, runDir string, mac string) ([]driver.DHCPLease, error)
}

// DefaultEngine runs the local driver's domains; nil until the VMM package
// registers one, and then start fails with a clear error.
var DefaultEngine Engine

// DefaultNetworkBackend sets up active networks; nil until the network
// package registers one, and then net-start fails with a clear error.
var DefaultNetworkBackend NetworkBackend

func noEngine() error {
	return driver.Errorf(driver.ErrConfigUnsupported, "the vsh KVM engine is not available in this build")
}

func noNetworkBackend() error {
	return driver.Errorf(driver.ErrConfigUnsupported, "the vsh network backend is not available in this build")
}
