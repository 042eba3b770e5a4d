package vm

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/arch"
	"vsh/hypervisor/kvm"
)

// VCPU is one virtual CPU, served by its own locked OS thread: every
// ioctl on it runs on that thread, as the KVM API asks.
type VCPU struct {
	m      *Machine
	index  int
	apicID uint32
	k      *kvm.VCPU

	cmds chan func()
	gone chan struct{}
	tid  atomic.Int32

	// kickMu guards the kvm_run mapping against kicks from other
	// goroutines (a device's RequestExit) once the vCPU is closed.
	kickMu sync.Mutex
	alive  bool

	powerOnRegs  kvm.Regs
	powerOnSregs kvm.Sregs
	powerOnLAPIC kvm.LAPICState
	cpuidSet     bool // touched only on the vCPU thread

	// SYSCALL fix-up state, touched only on the vCPU thread.
	syscallInstalled        bool
	sysfixCheck             atomic.Bool // check LSTAR at the next exit
	realLSTAR, star, sfmask uint64

	exits, ioExits, mmioExits, fixups atomic.Uint64
}

// newVCPU starts the vCPU's thread, pins it, and creates the vCPU on it.
func newVCPU(m *Machine, index int, apicID uint32, mmapSize int) (*VCPU, error) {
	c := &VCPU{m: m, index: index, apicID: apicID, cmds: make(chan func()), gone: make(chan struct{})}
	ready := make(chan error, 1)
	go c.thread(mmapSize, ready)
	if err := <-ready; err != nil {
		<-c.gone
		return nil, err
	}
	return c, nil
}

func (c *VCPU) thread(mmapSize int, ready chan<- error) {
	// The goroutine never unlocks its thread, so the thread exits with it
	// and takes its CPU affinity along.
	runtime.LockOSThread()
	defer close(c.gone)
	c.tid.Store(int32(unix.Gettid()))
	if err := c.pin(); err != nil {
		ready <- err
		return
	}
	k, err := c.m.vm.CreateVCPU(int(c.apicID), mmapSize)
	if err != nil {
		ready <- err
		return
	}
	c.k = k
	if err := c.capturePowerOn(); err != nil {
		k.Close()
		ready <- fmt.Errorf("vCPU %d: %w", c.index, err)
		return
	}
	c.kickMu.Lock()
	c.alive = true
	c.kickMu.Unlock()
	ready <- nil
	for fn := range c.cmds {
		fn()
	}
	c.kickMu.Lock()
	c.alive = false
	c.kickMu.Unlock()
	c.k.Close()
}

// pin applies the vCPU's host CPU affinity to the current thread.
func (c *VCPU) pin() error {
	cpus := c.m.opts.CPUSet
	if p, ok := c.m.opts.VCPUPins[c.index]; ok {
		cpus = p
	}
	if len(cpus) == 0 {
		return nil
	}
	var set unix.CPUSet
	for _, cpu := range cpus {
		if cpu < 0 || cpu >= len(set)*64 {
			return fmt.Errorf("pin vCPU %d: host CPU %d out of range", c.index, cpu)
		}
		set.Set(cpu)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin vCPU %d to host CPUs %v: %w", c.index, cpus, err)
	}
	return nil
}

// capturePowerOn records KVM's reset state of the vCPU, for Reset.
func (c *VCPU) capturePowerOn() (err error) {
	if c.powerOnRegs, err = c.k.GetRegs(); err != nil {
		return err
	}
	if c.powerOnSregs, err = c.k.GetSregs(); err != nil {
		return err
	}
	c.powerOnLAPIC, err = c.k.GetLAPIC()
	return err
}

// do runs fn on the vCPU's thread and returns its error. The vCPU must be
// parked (machine created, paused or stopped); otherwise do fails with
// ErrRunning rather than wait for a pause that may never come.
func (c *VCPU) do(fn func() error) error {
	if c.m.inRun.Load() {
		return ErrRunning
	}
	errc := make(chan error, 1)
	select {
	case c.cmds <- func() { errc <- fn() }:
	case <-c.gone:
		return errors.New("vCPU thread has exited")
	}
	return <-errc
}

// shutdown ends the vCPU thread, which closes the vCPU fd.
func (c *VCPU) shutdown() error {
	close(c.cmds)
	<-c.gone
	return nil
}

// kick forces the vCPU out of KVM_RUN.
func (c *VCPU) kick() {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	if !c.alive {
		return
	}
	c.k.Run().SetImmediateExit(true)
	_ = unix.Tgkill(pid, int(c.tid.Load()), kickSignal)
}

// powerOn puts the vCPU in the state it has after a hard reset, plus what
// firmware would set up: CPUID, boot MSRs, FPU, LINT0/LINT1. vCPU 0 is
// runnable; the others wait for INIT/SIPI.
func (c *VCPU) powerOn() error {
	c.syscallInstalled = false
	// KVM refuses to change CPUID once a vCPU has run (and the table is
	// the same on every reset), so it is set once.
	if !c.cpuidSet {
		if err := c.k.SetCPUID2(c.cpuid()); err != nil {
			return err
		}
		c.cpuidSet = true
	}
	if err := c.k.SetRegs(c.powerOnRegs); err != nil {
		return err
	}
	if err := c.k.SetSregs(c.powerOnSregs); err != nil {
		return err
	}
	if err := c.k.SetMSRs(arch.BootMSRs()); err != nil {
		return err
	}
	if err := c.k.SetFPU(arch.BootFPU()); err != nil {
		return err
	}
	lapic := c.powerOnLAPIC
	arch.SetLINT(&lapic)
	if err := c.k.SetLAPIC(lapic); err != nil {
		return err
	}
	if err := c.k.SetVCPUEvents(kvm.VCPUEvents{}); err != nil {
		return err
	}
	state := uint32(kvm.MPStateRunnable)
	if c.index != 0 {
		state = kvm.MPStateUninitialized
	}
	return c.k.SetMPState(state)
}

// cpuid returns this vCPU's CPUID table.
func (c *VCPU) cpuid() []kvm.CPUIDEntry {
	entries := append([]kvm.CPUIDEntry(nil), c.m.supportedCPUID...)
	if c.m.opts.FilterCPUID != nil {
		return c.m.opts.FilterCPUID(entries, c.index)
	}
	return minimalCPUID(entries, c.apicID, c.m.opts.VCPUs, c.m.opts.PVMFixups)
}

// CPUID leaf 1 bits the minimal filter touches.
const (
	cpuid1ECXCX16       = 1 << 13
	cpuid1ECXPOPCNT     = 1 << 23
	cpuid1ECXHypervisor = 1 << 31
	cpuid1EDXHTT        = 1 << 28
)

// minimalCPUID is the filter used until the caller provides one (package
// boot has the full one, with topology leaves): it sets the initial APIC
// id and logical-processor count in leaf 1, the x2APIC id in leaf 0xb, the
// hypervisor bit, and on PVM hides CX16 and POPCNT, which the nested
// layer cannot emulate in guest ring 0.
func minimalCPUID(entries []kvm.CPUIDEntry, apicID uint32, nvcpus int, pvm bool) []kvm.CPUIDEntry {
	for i := range entries {
		e := &entries[i]
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x0000ffff | apicID<<24 | uint32(nvcpus&0xff)<<16
			if nvcpus > 1 {
				e.EDX |= cpuid1EDXHTT
			}
			e.ECX |= cpuid1ECXHypervisor
			if pvm {
				e.ECX &^= cpuid1ECXCX16 | cpuid1ECXPOPCNT
			}
		case 0xb:
			e.EDX = apicID
		}
	}
	return entries
}

// cpuTime returns the vCPU thread's CPU time.
func (c *VCPU) cpuTime() time.Duration {
	tid := c.tid.Load()
	if tid == 0 {
		return 0
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(threadCPUClock(int(tid)), &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Index returns the vCPU's index (0 is the boot CPU).
func (c *VCPU) Index() int { return c.index }

// APICID returns the vCPU's APIC id.
func (c *VCPU) APICID() uint32 { return c.apicID }

// ThreadID returns the host thread id running the vCPU.
func (c *VCPU) ThreadID() int { return int(c.tid.Load()) }

// Entry is a vCPU's state at its first instruction in 64-bit mode.
type Entry struct {
	RIP, RSP uint64
	// RSI carries the boot_params address for a Linux kernel; RDI is
	// free for payloads.
	RSI, RDI uint64
	// CR3 is the page-table root, as returned by Machine.SetupLongMode.
	CR3 uint64
	// User starts the vCPU in ring 3 with IOPL 3 (DPL-3 segments), which
	// on a PVM host runs at native speed; for test payloads.
	User bool
}

// SetEntry puts the vCPU in 64-bit long mode at e and makes it runnable
// (an AP then starts at once instead of waiting for INIT/SIPI). Call it
// while the machine is not running, typically from Options.Boot.
func (c *VCPU) SetEntry(e Entry) error {
	return c.do(func() error {
		sregs, err := c.k.GetSregs()
		if err != nil {
			return err
		}
		arch.LongModeSregs(&sregs, e.CR3, e.User)
		if err := c.k.SetSregs(sregs); err != nil {
			return err
		}
		flags := uint64(arch.RFLAGSReserved)
		if e.User {
			flags |= arch.RFLAGSIOPL3
		}
		regs := kvm.Regs{RIP: e.RIP, RSP: e.RSP, RBP: e.RSP, RSI: e.RSI, RDI: e.RDI, RFLAGS: flags}
		if err := c.k.SetRegs(regs); err != nil {
			return err
		}
		return c.k.SetMPState(kvm.MPStateRunnable)
	})
}

// Regs returns the general-purpose registers (machine not running).
func (c *VCPU) Regs() (r kvm.Regs, err error) {
	err = c.do(func() error { r, err = c.k.GetRegs(); return err })
	return r, err
}

// SetRegs sets the general-purpose registers (machine not running).
func (c *VCPU) SetRegs(r kvm.Regs) error { return c.do(func() error { return c.k.SetRegs(r) }) }

// Sregs returns the special registers (machine not running).
func (c *VCPU) Sregs() (s kvm.Sregs, err error) {
	err = c.do(func() error { s, err = c.k.GetSregs(); return err })
	return s, err
}

// SetSregs sets the special registers (machine not running).
func (c *VCPU) SetSregs(s kvm.Sregs) error { return c.do(func() error { return c.k.SetSregs(s) }) }

// MPState returns the multiprocessing state (kvm.MPStateRunnable, ...).
func (c *VCPU) MPState() (s uint32, err error) {
	err = c.do(func() error { s, err = c.k.GetMPState(); return err })
	return s, err
}

// SetMPState sets the multiprocessing state.
func (c *VCPU) SetMPState(s uint32) error { return c.do(func() error { return c.k.SetMPState(s) }) }

// Do runs fn with the raw KVM vCPU on the vCPU's thread, for ioctls not
// wrapped here (MSRs, LAPIC, events). The machine must not be running.
func (c *VCPU) Do(fn func(k *kvm.VCPU) error) error { return c.do(func() error { return fn(c.k) }) }

// runLoop enters the guest until the machine parks its vCPUs.
func (c *VCPU) runLoop() {
	run := c.k.Run()
	run.SetImmediateExit(false)
	for {
		if c.m.park.Load() {
			run.SetImmediateExit(false)
			return
		}
		err := c.k.RunOnce()
		if err == unix.EINTR {
			// A kick: clearing immediate_exit is safe because park is
			// checked again before the next KVM_RUN.
			run.SetImmediateExit(false)
		} else {
			c.exits.Add(1)
			if err != nil {
				c.m.finish(Exit{Kind: ExitCrash, VCPU: c.index, Detail: "KVM_RUN failed", Err: err})
				continue
			}
			if e, stop := c.handleExit(run); stop {
				c.m.finish(e)
				continue
			}
		}
		if err := c.maybeInstallSyscallFixup(); err != nil {
			c.m.finish(c.crash("SYSCALL fix-up", err))
		}
	}
}

// handleExit serves one exit; it returns an Exit and true when the machine
// must stop.
func (c *VCPU) handleExit(run *kvm.Run) (Exit, bool) {
	reason := run.ExitReason()
	switch reason {
	case kvm.ExitIO:
		c.ioExits.Add(1)
		io, err := run.IO()
		if err != nil {
			return c.crash("bad I/O exit", err), true
		}
		pio := c.m.devs.PortBus()
		size := int(io.Size)
		for i := 0; i < int(io.Count); i++ {
			chunk := io.Data[i*size : (i+1)*size]
			if io.Direction == kvm.ExitIOOut {
				pio.Write(uint64(io.Port), chunk)
			} else {
				pio.Read(uint64(io.Port), chunk)
			}
		}
	case kvm.ExitMMIO:
		c.mmioExits.Add(1)
		mm, err := run.MMIO()
		if err != nil {
			return c.crash("bad MMIO exit", err), true
		}
		if c.isSyscallDoorbell(mm.PhysAddr) {
			if err := c.completeSyscall(); err != nil {
				return c.crash("SYSCALL fix-up", err), true
			}
			return Exit{}, false
		}
		if mm.IsWrite {
			c.m.devs.MMIOBus().Write(mm.PhysAddr, mm.Data)
		} else {
			c.m.devs.MMIOBus().Read(mm.PhysAddr, mm.Data)
		}
	case kvm.ExitIntr, kvm.ExitIRQWindowOpen:
	case kvm.ExitHLT:
		// Only seen without an in-kernel LAPIC, which this package always
		// creates; nothing could ever wake the vCPU, so treat it as off.
		return Exit{Kind: ExitPoweroff, VCPU: c.index, Detail: fmt.Sprintf("vCPU %d halted with no interrupt source", c.index)}, true
	case kvm.ExitShutdown:
		return Exit{Kind: ExitReboot, VCPU: c.index, Detail: fmt.Sprintf("triple fault on vCPU %d", c.index)}, true
	case kvm.ExitSystemEvent:
		ev := run.SystemEvent()
		switch ev.Type {
		case kvm.SystemEventShutdown:
			return Exit{Kind: ExitPoweroff, VCPU: c.index, Detail: "system event: shutdown"}, true
		case kvm.SystemEventReset:
			return Exit{Kind: ExitReboot, VCPU: c.index, Detail: "system event: reset"}, true
		case kvm.SystemEventCrash:
			return Exit{Kind: ExitCrash, VCPU: c.index, Detail: "system event: crash"}, true
		}
	case kvm.ExitFailEntry:
		fe := run.FailEntry()
		return c.crash("entry failed", fmt.Errorf("KVM_EXIT_FAIL_ENTRY: hardware reason %#x on host CPU %d", fe.HardwareEntryFailureReason, fe.CPU)), true
	case kvm.ExitInternalError:
		ie := run.InternalError()
		if c.m.opts.PVMFixups && ie.Suberror == kvm.InternalErrorEmulation {
			handled, err := c.pvmFixup(ie.Insn)
			if err != nil {
				return c.crash("PVM fix-up failed", err), true
			}
			if handled {
				c.fixups.Add(1)
				return Exit{}, false
			}
		}
		return c.crash("KVM internal error", c.describeInternalError(ie)), true
	default:
		return c.crash("unexpected exit", fmt.Errorf("%s", kvm.ExitName(reason))), true
	}
	return Exit{}, false
}

func (c *VCPU) crash(detail string, err error) Exit {
	return Exit{Kind: ExitCrash, VCPU: c.index, Detail: fmt.Sprintf("vCPU %d: %s", c.index, detail), Err: err}
}

// describeInternalError turns KVM_EXIT_INTERNAL_ERROR into an error with
// the guest RIP and, for emulation failures, the instruction bytes.
func (c *VCPU) describeInternalError(ie kvm.InternalError) error {
	rip := "unknown"
	if r, err := c.k.GetRegs(); err == nil {
		rip = fmt.Sprintf("%#x", r.RIP)
	}
	switch ie.Suberror {
	case kvm.InternalErrorEmulation:
		return fmt.Errorf("KVM_EXIT_INTERNAL_ERROR: cannot emulate instruction % x at RIP %s", ie.Insn, rip)
	default:
		return fmt.Errorf("KVM_EXIT_INTERNAL_ERROR: suberror %d, data %#x, RIP %s", ie.Suberror, ie.Data, rip)
	}
}

// pvmFixup completes an instruction the PVM layer could not emulate in
// guest ring 0 (this-machine-kvm.md): int3, fwait, clac/stac, fninit and
// register-form popcnt.
// It reports whether it handled it; others (ldmxcsr, xrstor, ...) stop the
// machine with the instruction bytes in the error.
func (c *VCPU) pvmFixup(insn []byte) (bool, error) {
	if len(insn) == 0 {
		return false, nil
	}
	switch insn[0] {
	case 0xcc: // int3: a trap, so #BP is delivered with RIP past it.
		if err := c.advanceRIP(1); err != nil {
			return false, err
		}
		ev, err := c.k.GetVCPUEvents()
		if err != nil {
			return false, err
		}
		ev.Exception.Injected = 1
		ev.Exception.Nr = 3
		ev.Exception.HasErrorCode = 0
		ev.Exception.Pending = 0
		ev.Flags = 0
		return true, c.k.SetVCPUEvents(ev)
	case 0x9b: // fwait with no x87 exception pending is a no-op.
		return true, c.advanceRIP(1)
	case 0x0f:
		// clac / stac (0f 01 ca / 0f 01 cb): clear or set RFLAGS.AC.
		if len(insn) >= 3 && insn[1] == 0x01 && (insn[2] == 0xca || insn[2] == 0xcb) {
			r, err := c.k.GetRegs()
			if err != nil {
				return false, err
			}
			if insn[2] == 0xca {
				r.RFLAGS &^= rflagsAC
			} else {
				r.RFLAGS |= rflagsAC
			}
			r.RIP += 3
			return true, c.k.SetRegs(r)
		}
	case 0xf3:
		// popcnt reg, reg (f3 [REX] 0f b8 /r with mod=11), which the
		// kernel's hweight helpers use.
		if ok, err := c.emulatePopcnt(insn); ok || err != nil {
			return ok, err
		}
	case 0xdb:
		// fninit (db e3): x87 control word 0x37f, status and tags clear.
		if len(insn) >= 2 && insn[1] == 0xe3 {
			f, err := c.k.GetFPU()
			if err != nil {
				return false, err
			}
			f.FCW, f.FSW, f.FTWX, f.LastOpcode, f.LastIP, f.LastDP = 0x37f, 0, 0, 0, 0, 0
			if err := c.k.SetFPU(f); err != nil {
				return false, err
			}
			return true, c.advanceRIP(2)
		}
	}
	return false, nil
}

// emulatePopcnt emulates the register form of popcnt.
func (c *VCPU) emulatePopcnt(insn []byte) (bool, error) {
	dst, src, wide, n, ok := decodePopcnt(insn)
	if !ok {
		return false, nil
	}
	r, err := c.k.GetRegs()
	if err != nil {
		return false, err
	}
	v := *gpr(&r, src)
	if !wide {
		v &= 0xffffffff
	}
	*gpr(&r, dst) = uint64(bits.OnesCount64(v))
	// ZF reflects a zero source; OF, SF, AF, CF and PF are cleared.
	r.RFLAGS &^= 1<<11 | 1<<7 | 1<<6 | 1<<4 | 1<<2 | 1<<0
	if v == 0 {
		r.RFLAGS |= 1 << 6
	}
	r.RIP += uint64(n)
	return true, c.k.SetRegs(r)
}

// decodePopcnt decodes "f3 [REX] 0f b8 modrm" with a register operand. It
// returns the destination and source register numbers (x86 encoding), the
// operand size (64-bit with REX.W) and the instruction length.
func decodePopcnt(insn []byte) (dst, src int, wide bool, n int, ok bool) {
	if len(insn) < 4 || insn[0] != 0xf3 {
		return 0, 0, false, 0, false
	}
	i := 1
	var rex byte
	if insn[i]&0xf0 == 0x40 {
		rex = insn[i]
		i++
	}
	if len(insn) < i+3 || insn[i] != 0x0f || insn[i+1] != 0xb8 {
		return 0, 0, false, 0, false
	}
	modrm := insn[i+2]
	if modrm>>6 != 3 {
		return 0, 0, false, 0, false
	}
	dst = int(rex>>2&1)<<3 | int(modrm>>3&7)
	src = int(rex&1)<<3 | int(modrm&7)
	return dst, src, rex&0x08 != 0, i + 3, true
}

// gpr returns the register with x86 encoding number n.
func gpr(r *kvm.Regs, n int) *uint64 {
	return [...]*uint64{&r.RAX, &r.RCX, &r.RDX, &r.RBX, &r.RSP, &r.RBP, &r.RSI, &r.RDI,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}[n]
}

// rflagsAC is RFLAGS.AC, the SMAP override flag clac/stac change.
const rflagsAC = 1 << 18

func (c *VCPU) advanceRIP(n uint64) error {
	r, err := c.k.GetRegs()
	if err != nil {
		return err
	}
	r.RIP += n
	return c.k.SetRegs(r)
}
