package vm

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/arch"
	"vsh/hypervisor/kvm"
)

// The SYSCALL fix-up for PVM hosts (this-machine-kvm.md, "SYSCALL from
// guest ring 3 does not reach ring 0"). There a guest user-mode syscall
// jumps to LSTAR but stays in ring 3, so a Linux guest's first system call
// faults. The fix: map a user-executable trampoline page in an unused
// kernel-half slot of the guest's top-level page table (new processes
// inherit kernel-half entries), point LSTAR at it, and let its single
// instruction write to an unbacked guest-physical page. That write exits as
// KVM_EXIT_MMIO; the VMM then moves the vCPU to ring 0 at the real LSTAR
// with the kernel's CS/SS from MSR_STAR, exactly where the CPU would have
// gone. sysretq, iretq and swapgs work on PVM, so the way back needs nothing.
//
// Guest-physical layout: a private 4-page memory slot at trampolineGPA
// holding the PDPT, PD, PT and code page, and the doorbell page at
// trampolineDoorbell, which has no memory behind it.
const (
	trampolineGPA      = 0xfeff0000
	trampolinePages    = 4
	trampolineDoorbell = 0xfeff8000
	trampolineSlot     = 2 // KVM memory slot id (0 and 1 are RAM)
)

// trampolineCode is "mov [rip+0xffa], al; ud2": a byte store to the page
// mapped right after the code page (the doorbell), then a trap that is
// never reached.
var trampolineCode = []byte{0x88, 0x05, 0xfa, 0x0f, 0x00, 0x00, 0x0f, 0x0b}

// syscallFixup is the machine-wide state of the fix-up.
type syscallFixup struct {
	requested bool
	mapping   []byte // the private slot's host memory
	va        uint64 // trampoline virtual address (0 until installed)
	slot      int    // PML4 index used
}

// EnableSyscallFixup arms the SYSCALL fix-up (only with Options.PVMFixups;
// otherwise it does nothing). Call it when the machine starts: from then
// on every vCPU is asked, every sysfixPollInterval, to check its LSTAR, and
// once the guest kernel has pointed LSTAR at its entry code (LSTAR is 0
// from power-on until then) the vCPU maps the trampoline into the kernel's page table and
// redirects LSTAR to it. A later change of LSTAR by the guest (a CPU
// brought online, a kernel that rewrites it) is caught by the next check.
// Polling, rather than waiting for a console message, works whatever the
// guest prints (a "quiet" kernel prints nothing before /init), and the
// guest kernel's boot up to its first user process takes far longer than
// the interval on the hosts that need the fix-up.
func (m *Machine) EnableSyscallFixup() {
	if !m.opts.PVMFixups {
		return
	}
	m.sysfixMu.Lock()
	already := m.sysfix.requested
	m.sysfix.requested = true
	m.sysfixMu.Unlock()
	if already {
		return
	}
	m.sysfixArmed.Store(true)
	m.requestSyscallCheck()
	go func() {
		t := time.NewTicker(sysfixPollInterval)
		defer t.Stop()
		for range t.C {
			if !m.sysfixArmed.Load() {
				return
			}
			switch m.State() {
			case StateStopped, StateClosed:
				return
			case StateRunning:
				m.requestSyscallCheck()
			}
		}
	}()
}

// sysfixPollInterval is how often vCPUs check their LSTAR.
const sysfixPollInterval = 50 * time.Millisecond

// requestSyscallCheck makes every vCPU leave KVM_RUN once (a kick without
// park) and check its LSTAR before going back in.
func (m *Machine) requestSyscallCheck() {
	for _, c := range m.vcpus {
		c.sysfixCheck.Store(true)
		c.kick()
	}
}

// maybeInstallSyscallFixup runs on the vCPU thread between exits.
func (c *VCPU) maybeInstallSyscallFixup() error {
	if !c.m.sysfixArmed.Load() || !c.sysfixCheck.Swap(false) {
		return nil
	}
	msrs := []kvm.MSREntry{{Index: arch.MSRLStar}, {Index: arch.MSRStar}, {Index: arch.MSRSyscallMask}}
	if err := c.k.GetMSRs(msrs); err != nil {
		return err
	}
	lstar := msrs[0].Data
	if lstar == 0 {
		return nil // the guest has not set up SYSCALL on this vCPU yet
	}
	c.m.sysfixMu.Lock()
	va := c.m.sysfix.va
	c.m.sysfixMu.Unlock()
	if c.syscallInstalled && lstar == va {
		return nil
	}
	sregs, err := c.k.GetSregs()
	if err != nil {
		return err
	}
	va, err = c.m.installTrampoline(sregs.CR3)
	if err != nil {
		return err
	}
	if lstar == va {
		return nil
	}
	c.realLSTAR, c.star, c.sfmask = lstar, msrs[1].Data, msrs[2].Data
	if err := c.k.SetMSRs([]kvm.MSREntry{{Index: arch.MSRLStar, Data: va}}); err != nil {
		return err
	}
	c.syscallInstalled = true
	return nil
}

// installTrampoline maps the trampoline into the page table at cr3 (once
// per distinct table) and returns its virtual address.
func (m *Machine) installTrampoline(cr3 uint64) (uint64, error) {
	m.sysfixMu.Lock()
	defer m.sysfixMu.Unlock()
	f := &m.sysfix
	if f.mapping == nil {
		mem, err := unix.Mmap(-1, 0, trampolinePages*0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return 0, fmt.Errorf("SYSCALL fix-up: map trampoline: %w", err)
		}
		f.mapping = mem
		// PDPT[0] -> PD, PD[0] -> PT, PT[0] -> code, PT[1] -> doorbell.
		const user = 0x7 // present, writable, user
		binary.LittleEndian.PutUint64(mem[0x0000:], trampolineGPA+0x1000|user)
		binary.LittleEndian.PutUint64(mem[0x1000:], trampolineGPA+0x2000|user)
		binary.LittleEndian.PutUint64(mem[0x2000:], trampolineGPA+0x3000|0x5) // present, user, read-only
		binary.LittleEndian.PutUint64(mem[0x2008:], trampolineDoorbell|user)
		copy(mem[0x3000:], trampolineCode)
		err = m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot: trampolineSlot, GuestPhysAddr: trampolineGPA,
			MemorySize: uint64(len(mem)), UserspaceAddr: hostAddr(mem),
		})
		if err != nil {
			return 0, fmt.Errorf("SYSCALL fix-up: register trampoline: %w", err)
		}
	}
	pml4 := cr3 & 0x000ffffffffff000
	table := make([]byte, 0x1000)
	if err := m.mem.ReadAt(table, pml4); err != nil {
		return 0, fmt.Errorf("SYSCALL fix-up: read guest page table at %#x: %w", pml4, err)
	}
	entry := func(i int) uint64 { return binary.LittleEndian.Uint64(table[8*i:]) }
	want := uint64(trampolineGPA | 0x7)
	if f.va != 0 {
		// Already chosen: add the same slot to this table if it is free.
		switch e := entry(f.slot); {
		case e == want:
		case e == 0:
			if err := m.mem.PutUint64(pml4+8*uint64(f.slot), want); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("SYSCALL fix-up: PML4 slot %d is in use in the page table at %#x", f.slot, pml4)
		}
		return f.va, nil
	}
	// Linux's documented holes first (x86_64 mm.rst, 4-level paging): slot
	// 509 (fffffe8000000000) and 504-507 (fffffc0000000000), then any free
	// kernel-half slot from the top down. Slots 256-271, the guard hole
	// Linux leaves for hypervisors, are avoided: PVM itself lives there.
	slot := -1
	for _, i := range sysfixSlotOrder() {
		if entry(i) == 0 {
			slot = i
			break
		}
	}
	if slot < 0 {
		return 0, fmt.Errorf("SYSCALL fix-up: no free kernel-half slot in the page table at %#x", pml4)
	}
	if err := m.mem.PutUint64(pml4+8*uint64(slot), want); err != nil {
		return 0, err
	}
	f.slot = slot
	f.va = 0xffff000000000000 | uint64(slot)<<39
	return f.va, nil
}

// isSyscallDoorbell reports whether an MMIO exit is the trampoline's.
func (c *VCPU) isSyscallDoorbell(addr uint64) bool {
	return c.syscallInstalled && addr >= trampolineDoorbell && addr < trampolineDoorbell+0x1000
}

// completeSyscall finishes a SYSCALL the PVM layer left in ring 3: it
// completes the pending MMIO write, then enters ring 0 at the real LSTAR
// with the kernel segments from MSR_STAR and RFLAGS masked by SFMASK. RCX
// and R11 already hold the return RIP and RFLAGS from the instruction.
func (c *VCPU) completeSyscall() error {
	run := c.k.Run()
	run.SetImmediateExit(true)
	err := c.k.RunOnce()
	run.SetImmediateExit(false)
	if err != nil && err != unix.EINTR {
		return err
	}
	regs, err := c.k.GetRegs()
	if err != nil {
		return err
	}
	sregs, err := c.k.GetSregs()
	if err != nil {
		return err
	}
	sel := uint16(c.star>>32) &^ 3
	sregs.CS = kvm.Segment{Limit: 0xffffffff, Selector: sel, Type: 11, Present: 1, S: 1, L: 1, G: 1}
	sregs.SS = kvm.Segment{Limit: 0xffffffff, Selector: sel + 8, Type: 3, Present: 1, S: 1, DB: 1, G: 1}
	regs.RIP = c.realLSTAR
	regs.RFLAGS = regs.RFLAGS&^c.sfmask | arch.RFLAGSReserved
	if err := c.k.SetSregs(sregs); err != nil {
		return err
	}
	return c.k.SetRegs(regs)
}

// sysfixSlotOrder is the order in which PML4 slots are tried.
func sysfixSlotOrder() []int {
	order := []int{509, 507, 506, 505, 504}
	for i := 503; i >= 272; i-- {
		order = append(order, i)
	}
	return order
}
