// Package vm builds and runs a KVM virtual machine: guest memory, the
// in-kernel irqchip and PIT, a device manager that owns every guest
// address and interrupt line, and one OS thread per vCPU running the
// KVM_RUN loop. It offers the lifecycle the VMM process drives: Start,
// Pause/Resume, Reset, Stop, Wait and Close.
//
// What the guest runs is not this package's business: Options.Boot loads
// it (a Linux kernel via package boot, or a test payload) and sets each
// vCPU's entry state.
//
// Device models run on the vCPU threads (their Read/Write serve exits).
// From there they may call RequestExit, EnableSyscallFixup and their
// bus.Interrupt, but never Start, Pause, Resume, Reset, Stop or Close,
// which wait for the vCPUs and would wait for themselves.
package vm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"vsh/hypervisor"
	"vsh/hypervisor/arch"
	"vsh/hypervisor/kvm"
	"vsh/hypervisor/memory"
)

// Options configures a Machine.
type Options struct {
	// DevicePath is the KVM device; "" means /dev/kvm.
	DevicePath string

	// MemoryBytes is the guest RAM size, a multiple of 4 KiB (2 MiB with
	// HugePages). Above 3 GiB, RAM continues at 4 GiB.
	MemoryBytes uint64
	// HugePages backs guest memory with 2 MiB hugetlb pages.
	HugePages bool
	// NoSharePages keeps guest memory out of KSM; otherwise it is offered
	// to KSM (MADV_MERGEABLE).
	NoSharePages bool

	// VCPUs is the number of vCPUs (at least 1).
	VCPUs int
	// APICIDs, when set, gives each vCPU's APIC id (it must match the
	// CPUID topology and the MP table); by default vCPU i has APIC id i.
	APICIDs []uint32
	// CPUSet pins every vCPU thread to these host CPUs; VCPUPins
	// overrides it per vCPU. Empty means no pinning.
	CPUSet   []int
	VCPUPins map[int][]int

	// FilterCPUID turns KVM_GET_SUPPORTED_CPUID's table into the one vCPU
	// vcpu sees (boot.FilterCPUID does this for a Linux guest). Nil uses
	// a minimal local filter: APIC id and count in leaf 1, the hypervisor
	// bit, and with PVMFixups CX16/POPCNT hidden.
	FilterCPUID func(entries []kvm.CPUIDEntry, vcpu int) []kvm.CPUIDEntry

	// PVMFixups turns on the work-arounds the PVM nested KVM needs
	// (this-machine-kvm.md): int3 in guest ring 0 is delivered as #BP,
	// fwait is skipped. Set it when kvm.IsPVM() reports true; on real
	// VT-x/AMD-V hosts the fix-ups never trigger.
	PVMFixups bool

	// Boot loads the guest and sets the vCPUs' entry state. It runs at
	// Start and again at every Reset, after guest memory has been zeroed
	// and every vCPU put back in its power-on state (vCPU 0 runnable, the
	// others waiting for INIT/SIPI).
	Boot func(m *Machine) error
}

// OptionsFromConfig fills the machine-level fields of Options from an
// engine Config; the caller adds Boot and FilterCPUID.
func OptionsFromConfig(c *hypervisor.Config) Options {
	return Options{
		MemoryBytes:  c.MemoryBytes,
		HugePages:    c.HugePages,
		NoSharePages: c.NoSharePages,
		VCPUs:        c.VCPUs,
		CPUSet:       c.CPUSet,
		VCPUPins:     c.VCPUPins,
		PVMFixups:    kvm.IsPVM(),
	}
}

// ExitKind says why a machine stopped.
type ExitKind int

// Exit kinds.
const (
	// ExitPoweroff: the guest powered off (KVM_SYSTEM_EVENT_SHUTDOWN, or a
	// device asked for it with RequestExit).
	ExitPoweroff ExitKind = iota
	// ExitReboot: the guest reset itself (triple fault, system reset
	// event, i8042 reset line).
	ExitReboot
	// ExitCrash: the guest crashed, or the engine hit an error it cannot
	// continue from (Exit.Err says which).
	ExitCrash
	// ExitStopped: the host stopped the machine (Stop or Close).
	ExitStopped
)

func (k ExitKind) String() string {
	switch k {
	case ExitPoweroff:
		return "poweroff"
	case ExitReboot:
		return "reboot"
	case ExitCrash:
		return "crash"
	case ExitStopped:
		return "stopped"
	}
	return fmt.Sprintf("ExitKind(%d)", int(k))
}

// Exit is why a machine stopped.
type Exit struct {
	Kind ExitKind
	// VCPU is the vCPU that caused the exit, or -1.
	VCPU int
	// Detail is a human-readable cause ("triple fault", ...).
	Detail string
	// Err is set for ExitCrash caused by an engine or KVM error.
	Err error
}

func (e Exit) String() string {
	s := e.Kind.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// ErrRunning is returned by vCPU state accessors while the vCPUs run;
// pause the machine first.
var ErrRunning = errors.New("vCPU state is only accessible while the machine is paused or stopped")

// State is a machine's lifecycle state.
type State int

// Machine states.
const (
	StateCreated State = iota
	StateRunning
	StatePaused
	StateStopped
	StateClosed
)

func (s State) String() string {
	return [...]string{"created", "running", "paused", "stopped", "closed"}[s]
}

// Machine is one KVM virtual machine.
type Machine struct {
	opts  Options
	sys   *kvm.System
	vm    *kvm.VM
	ram   *guestRAM
	mem   *memory.Guest
	devs  *DeviceManager
	vcpus []*VCPU

	supportedCPUID []kvm.CPUIDEntry
	irqchipReset   []kvm.IRQChip

	// opMu serialises lifecycle operations.
	opMu sync.Mutex

	mu        sync.Mutex
	cond      *sync.Cond
	state     State
	exit      Exit
	exitSet   bool
	phaseDone chan struct{}

	sysfixMu    sync.Mutex
	sysfix      syscallFixup
	sysfixArmed atomic.Bool

	// inRun is true while the vCPUs are in their run loops; vCPU state
	// accessors refuse to wait for them.
	inRun atomic.Bool

	// park tells the vCPUs to leave KVM_RUN and return to their command
	// loop; it is set before they are kicked.
	park atomic.Bool
}

// New creates a VM: it opens KVM, checks the capabilities the engine needs,
// creates the VM with its TSS, identity map, irqchip and PIT, maps and
// registers guest memory, and creates the vCPU threads. Nothing runs until
// Start.
func New(opts Options) (_ *Machine, err error) {
	if opts.VCPUs < 1 {
		return nil, fmt.Errorf("create VM: %d vCPUs, need at least 1", opts.VCPUs)
	}
	if opts.APICIDs != nil && len(opts.APICIDs) != opts.VCPUs {
		return nil, fmt.Errorf("create VM: %d APIC ids for %d vCPUs", len(opts.APICIDs), opts.VCPUs)
	}
	m := &Machine{opts: opts}
	m.cond = sync.NewCond(&m.mu)
	defer func() {
		if err != nil {
			m.release()
		}
	}()
	if m.sys, err = kvm.Open(opts.DevicePath); err != nil {
		return nil, err
	}
	if err = m.sys.Require(kvm.RequiredCaps...); err != nil {
		return nil, err
	}
	if max, _ := m.sys.CheckExtension(kvm.CapMaxVCPUs); max > 0 && opts.VCPUs > max {
		return nil, fmt.Errorf("create VM: %d vCPUs requested, KVM allows %d", opts.VCPUs, max)
	}
	ioeventfd, _ := m.sys.CheckExtension(kvm.CapIOEventFD)
	mmapSize, err := m.sys.VCPUMmapSize()
	if err != nil {
		return nil, err
	}
	if m.supportedCPUID, err = m.sys.SupportedCPUID(); err != nil {
		return nil, err
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, err
	}
	if err = m.vm.SetTSSAddr(TSSAddr); err != nil {
		return nil, err
	}
	if err = m.vm.SetIdentityMapAddr(IdentityMapAddr); err != nil {
		return nil, err
	}
	if err = m.vm.CreateIRQChip(); err != nil {
		return nil, err
	}
	if err = m.vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return nil, err
	}
	for _, chip := range []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC} {
		c, err := m.vm.GetIRQChip(chip)
		if err != nil {
			return nil, err
		}
		m.irqchipReset = append(m.irqchipReset, c)
	}
	if m.ram, err = allocRAM(opts.MemoryBytes, opts.HugePages, opts.NoSharePages); err != nil {
		return nil, err
	}
	if m.mem, err = memory.New(m.ram.regions...); err != nil {
		return nil, err
	}
	for i, r := range m.ram.regions {
		err = m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot:          uint32(i),
			GuestPhysAddr: r.GPA,
			MemorySize:    uint64(len(r.Host)),
			UserspaceAddr: hostAddr(r.Host),
		})
		if err != nil {
			return nil, fmt.Errorf("register guest memory at %#x: %w", r.GPA, err)
		}
	}
	m.devs = newDeviceManager(m.vm, ioeventfd > 0, m.ram.regions)
	for i := 0; i < opts.VCPUs; i++ {
		id := uint32(i)
		if opts.APICIDs != nil {
			id = opts.APICIDs[i]
		}
		c, err := newVCPU(m, i, id, mmapSize)
		if err != nil {
			return nil, err
		}
		m.vcpus = append(m.vcpus, c)
	}
	return m, nil
}

// Memory returns guest RAM.
func (m *Machine) Memory() *memory.Guest { return m.mem }

// Devices returns the device manager.
func (m *Machine) Devices() *DeviceManager { return m.devs }

// VCPUs returns the vCPUs, in index order.
func (m *Machine) VCPUs() []*VCPU { return m.vcpus }

// VCPU returns vCPU i.
func (m *Machine) VCPU(i int) *VCPU { return m.vcpus[i] }

// KVM returns the VM fd wrapper, for ioctls this package does not cover.
func (m *Machine) KVM() *kvm.VM { return m.vm }

// State returns the lifecycle state.
func (m *Machine) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// SetupLongMode writes the GDT and identity page tables (2 MiB pages
// covering at least 4 GiB, or all of RAM) that Entry states rely on. user
// makes the mapping usable from ring 3. Call it from Options.Boot.
func (m *Machine) SetupLongMode(user bool) (cr3 uint64, err error) {
	top := uint64(FourGiB)
	for _, r := range m.mem.Regions() {
		if end := r.GPA + uint64(len(r.Host)); end > top {
			top = end
		}
	}
	if err := arch.SetupGDT(m.mem); err != nil {
		return 0, err
	}
	return arch.SetupPageTables(m.mem, top, user)
}

// Start runs the guest: it puts every vCPU in its power-on state, calls
// Options.Boot, and starts the vCPUs.
func (m *Machine) Start() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if s := m.State(); s != StateCreated {
		return fmt.Errorf("start: machine is %s", s)
	}
	if err := m.boot(false); err != nil {
		return err
	}
	m.startPhase()
	return nil
}

// boot resets the vCPUs (and, on reset, memory and irqchips) and calls the
// Boot hook. The vCPUs are parked.
func (m *Machine) boot(reset bool) error {
	if reset {
		m.sysfixMu.Lock()
		m.sysfix.requested, m.sysfix.va, m.sysfix.slot = false, 0, 0
		m.sysfixArmed.Store(false)
		m.sysfixMu.Unlock()
		if err := m.ram.discard(); err != nil {
			return err
		}
		for _, c := range m.irqchipReset {
			if err := m.vm.SetIRQChip(c); err != nil {
				return fmt.Errorf("reset irqchip %d: %w", c.ChipID, err)
			}
		}
	}
	for _, c := range m.vcpus {
		if err := c.do(c.powerOn); err != nil {
			return fmt.Errorf("reset vCPU %d: %w", c.index, err)
		}
	}
	if m.opts.Boot != nil {
		if err := m.opts.Boot(m); err != nil {
			return fmt.Errorf("boot: %w", err)
		}
	}
	return nil
}

// startPhase sends every parked vCPU into its run loop and arranges for
// the machine to become stopped once they have all returned with an exit
// recorded.
func (m *Machine) startPhase() {
	m.park.Store(false)
	done := make(chan struct{})
	var wg sync.WaitGroup
	m.mu.Lock()
	m.state = StateRunning
	m.exitSet = false
	m.exit = Exit{}
	m.phaseDone = done
	m.mu.Unlock()
	m.inRun.Store(true)
	for _, c := range m.vcpus {
		wg.Add(1)
		c.cmds <- func() {
			defer wg.Done()
			c.runLoop()
		}
	}
	go func() {
		wg.Wait()
		m.inRun.Store(false)
		m.mu.Lock()
		if m.exitSet {
			m.state = StateStopped
		}
		close(done)
		m.cond.Broadcast()
		m.mu.Unlock()
	}()
}

// parkAll makes every vCPU leave KVM_RUN and waits until they have.
func (m *Machine) parkAll() {
	m.mu.Lock()
	done := m.phaseDone
	running := m.state == StateRunning
	m.mu.Unlock()
	if !running {
		return
	}
	m.kickAll()
	<-done
}

// kickAll sets park, then forces every vCPU out of KVM_RUN: immediate_exit
// catches a vCPU about to enter, the signal one already inside.
func (m *Machine) kickAll() {
	m.park.Store(true)
	for _, c := range m.vcpus {
		c.kick()
	}
}

// finish records the first exit of the current run and stops all vCPUs.
// Safe from any goroutine, including a vCPU's own.
func (m *Machine) finish(e Exit) {
	m.mu.Lock()
	if !m.exitSet {
		m.exit = e
		m.exitSet = true
	}
	m.mu.Unlock()
	m.kickAll()
}

// RequestExit stops the machine on a device's behalf: a reset line (i8042
// pulse -> ExitReboot), a poweroff register (ExitPoweroff) or a panic
// notifier (ExitCrash). It may be called from a device's Read/Write on a
// vCPU thread.
func (m *Machine) RequestExit(kind ExitKind, detail string) {
	m.finish(Exit{Kind: kind, VCPU: -1, Detail: detail})
}

// Pause parks every vCPU outside KVM_RUN; guest time stands still (apart
// from the in-kernel timers) until Resume.
func (m *Machine) Pause() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	switch s := m.State(); s {
	case StatePaused:
		return nil
	case StateRunning:
	default:
		return fmt.Errorf("pause: machine is %s", s)
	}
	m.parkAll()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == StateRunning {
		m.state = StatePaused
	}
	return nil
}

// Resume restarts the vCPUs after Pause.
func (m *Machine) Resume() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if s := m.State(); s != StatePaused {
		if s == StateRunning {
			return nil
		}
		return fmt.Errorf("resume: machine is %s", s)
	}
	m.startPhase()
	return nil
}

// Reset is a hard reset: it stops the vCPUs, zeroes guest memory, restores
// the irqchips and vCPUs to their power-on state, runs Options.Boot again
// and restarts the vCPUs. It also restarts a stopped machine (after an
// ExitReboot, say). Device models keep their state; reset them from Boot.
func (m *Machine) Reset() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	switch s := m.State(); s {
	case StateRunning:
		m.parkAll()
	case StatePaused, StateStopped:
	default:
		return fmt.Errorf("reset: machine is %s", s)
	}
	if err := m.boot(true); err != nil {
		m.mu.Lock()
		m.exit = Exit{Kind: ExitCrash, VCPU: -1, Detail: "reset failed", Err: err}
		m.exitSet = true
		m.state = StateStopped
		m.cond.Broadcast()
		m.mu.Unlock()
		return err
	}
	m.startPhase()
	return nil
}

// Stop ends the run now; Wait then returns ExitStopped (unless the guest
// had already stopped the machine for another reason).
func (m *Machine) Stop() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.stopLocked()
}

func (m *Machine) stopLocked() {
	switch m.State() {
	case StateRunning:
		m.finish(Exit{Kind: ExitStopped, VCPU: -1})
		m.parkAll()
	case StateCreated, StatePaused:
		m.mu.Lock()
		m.exit = Exit{Kind: ExitStopped, VCPU: -1}
		m.exitSet = true
		m.state = StateStopped
		m.cond.Broadcast()
		m.mu.Unlock()
	}
}

// Wait blocks until the machine stops and returns why.
func (m *Machine) Wait() Exit {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.state != StateStopped && m.state != StateClosed {
		m.cond.Wait()
	}
	return m.exit
}

// Close stops the machine and releases everything: vCPU threads and fds,
// ioeventfds, the VM fd, /dev/kvm and guest memory.
func (m *Machine) Close() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.State() == StateClosed {
		return nil
	}
	m.stopLocked()
	err := m.release()
	m.mu.Lock()
	m.state = StateClosed
	m.cond.Broadcast()
	m.mu.Unlock()
	return err
}

// release frees resources; it tolerates a partly built machine.
func (m *Machine) release() error {
	var errs []error
	for _, c := range m.vcpus {
		if err := c.shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.devs != nil {
		m.devs.close()
	}
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
		m.vm = nil
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
		m.sys = nil
	}
	if m.ram != nil {
		errs = append(errs, m.ram.free())
	}
	if m.sysfix.mapping != nil {
		errs = append(errs, unix.Munmap(m.sysfix.mapping))
		m.sysfix.mapping = nil
	}
	return errors.Join(errs...)
}

// VCPUStats is one vCPU's counters.
type VCPUStats struct {
	// CPUTime is the vCPU thread's CPU time (user + system, which
	// includes time spent running the guest).
	CPUTime time.Duration
	// Exits counts returns from KVM_RUN; IOExits and MMIOExits count
	// those exits handed to the buses, Fixups the instructions completed
	// by the PVM fix-ups.
	Exits, IOExits, MMIOExits, Fixups uint64
}

// Stats returns per-vCPU counters.
func (m *Machine) Stats() []VCPUStats {
	out := make([]VCPUStats, len(m.vcpus))
	for i, c := range m.vcpus {
		out[i] = VCPUStats{
			CPUTime:   c.cpuTime(),
			Exits:     c.exits.Load(),
			IOExits:   c.ioExits.Load(),
			MMIOExits: c.mmioExits.Load(),
			Fixups:    c.fixups.Load(),
		}
	}
	return out
}

// threadCPUClock is the clock id of a thread's CPU-time clock
// (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
func threadCPUClock(tid int) int32 { return int32(^uint32(tid)<<3 | 6) }

var pid = os.Getpid()

// kickSignal interrupts KVM_RUN. The Go runtime handles SIGURG (it uses it
// for preemption) and tolerates spurious ones, so it is safe to send.
const kickSignal = unix.SIGURG
