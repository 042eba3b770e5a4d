package kvm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is where the KVM device normally lives.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm.
type System struct {
	fd int
}

// Open opens the KVM device at path (DevicePath if empty) and checks the
// API version, turning the usual failures into errors that say what to do.
func Open(path string) (*System, error) {
	if path == "" {
		path = DevicePath
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("%s does not exist: load kvm_intel or kvm_amd (modprobe kvm_intel), or enable virtualization in the firmware: %w", path, err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("%s: permission denied — add yourself to group kvm (usermod -aG kvm $USER) and log in again: %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := callVal(fd, KVM_GET_API_VERSION, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("%s: KVM API version %d, want %d", path, v, APIVersion)
	}
	return s, nil
}

// Close closes /dev/kvm.
func (s *System) Close() error { return unix.Close(s.fd) }

// FD returns the file descriptor.
func (s *System) FD() int { return s.fd }

// CheckExtension returns KVM_CHECK_EXTENSION's answer for cap (0 = absent).
func (s *System) CheckExtension(cap uintptr) (int, error) {
	r, err := callVal(s.fd, KVM_CHECK_EXTENSION, cap)
	return int(r), err
}

// capNames are the capability names used in errors.
var capNames = map[uintptr]string{
	CapIRQChip: "KVM_CAP_IRQCHIP", CapUserMemory: "KVM_CAP_USER_MEMORY", CapSetTSSAddr: "KVM_CAP_SET_TSS_ADDR",
	CapPIT2: "KVM_CAP_PIT2", CapIRQFD: "KVM_CAP_IRQFD", CapIOEventFD: "KVM_CAP_IOEVENTFD",
	CapSetIdentityMapAddr: "KVM_CAP_SET_IDENTITY_MAP_ADDR", CapImmediateExit: "KVM_CAP_IMMEDIATE_EXIT",
	CapMPState: "KVM_CAP_MP_STATE", CapVCPUEvents: "KVM_CAP_VCPU_EVENTS", CapSignalMSI: "KVM_CAP_SIGNAL_MSI",
	CapGetTSCKHz: "KVM_CAP_GET_TSC_KHZ", CapReadonlyMem: "KVM_CAP_READONLY_MEM",
}

// RequiredCaps are the capabilities the engine cannot work without.
var RequiredCaps = []uintptr{CapIRQChip, CapUserMemory, CapSetTSSAddr, CapPIT2, CapSetIdentityMapAddr, CapImmediateExit, CapMPState, CapVCPUEvents}

// Require checks that every capability in caps is present and returns an
// error naming the first missing one.
func (s *System) Require(caps ...uintptr) error {
	for _, c := range caps {
		n, err := s.CheckExtension(c)
		if err != nil {
			return err
		}
		if n <= 0 {
			name := capNames[c]
			if name == "" {
				name = fmt.Sprintf("KVM capability %d", c)
			}
			return fmt.Errorf("%s missing: the host kernel's KVM is too old or built without it", name)
		}
	}
	return nil
}

// VCPUMmapSize returns the size of a vCPU's kvm_run mapping.
func (s *System) VCPUMmapSize() (int, error) {
	r, err := callVal(s.fd, KVM_GET_VCPU_MMAP_SIZE, 0)
	return int(r), err
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID's entries.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for n := 64; n <= 4096; n *= 2 {
		buf := make([]byte, 8+n*int(unsafe.Sizeof(CPUIDEntry{})))
		*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(n)
		_, err := ioctlPtr(s.fd, KVM_GET_SUPPORTED_CPUID, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		got := int(*(*uint32)(unsafe.Pointer(&buf[0])))
		out := make([]CPUIDEntry, got)
		copy(out, unsafe.Slice((*CPUIDEntry)(unsafe.Pointer(&buf[8])), got))
		return out, nil
	}
	return nil, errors.New("KVM_GET_SUPPORTED_CPUID: more than 4096 entries")
}

// CreateVM creates a VM (KVM_CREATE_VM with the default machine type).
func (s *System) CreateVM() (*VM, error) {
	r, err := callVal(s.fd, KVM_CREATE_VM, 0)
	if err != nil {
		return nil, err
	}
	return &VM{fd: int(r)}, nil
}

// VM is a KVM virtual machine fd. Its methods are safe for concurrent use,
// and after Close they fail with ErrClosed instead of reaching whatever
// file reuses the fd number (device goroutines may outlive the VM).
type VM struct {
	mu     sync.RWMutex
	fd     int
	closed bool
}

// ErrClosed is returned by VM methods after Close.
var ErrClosed = errors.New("KVM VM is closed")

// FD returns the file descriptor.
func (vm *VM) FD() int { return vm.fd }

// Close closes the VM fd; the kernel frees the VM once every vCPU fd is
// closed too.
func (vm *VM) Close() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil
	}
	vm.closed = true
	return unix.Close(vm.fd)
}

// vmCall is call on the VM fd, guarded against Close.
func (vm *VM) vmCall(req uintptr, arg unsafe.Pointer) (uintptr, error) {
	vm.mu.RLock()
	defer vm.mu.RUnlock()
	if vm.closed {
		return 0, fmt.Errorf("%s: %w", ioctlName(req), ErrClosed)
	}
	return call(vm.fd, req, arg)
}

// vmCallVal is callVal on the VM fd, guarded against Close.
func (vm *VM) vmCallVal(req, arg uintptr) (uintptr, error) {
	vm.mu.RLock()
	defer vm.mu.RUnlock()
	if vm.closed {
		return 0, fmt.Errorf("%s: %w", ioctlName(req), ErrClosed)
	}
	return callVal(vm.fd, req, arg)
}

// CheckExtension asks the VM fd about a capability (some answers are per VM).
func (vm *VM) CheckExtension(cap uintptr) (int, error) {
	r, err := vm.vmCallVal(KVM_CHECK_EXTENSION, cap)
	return int(r), err
}

// SetTSSAddr places the 3-page TSS region KVM needs on Intel hosts.
func (vm *VM) SetTSSAddr(addr uint64) error {
	_, err := vm.vmCallVal(KVM_SET_TSS_ADDR, uintptr(addr))
	return err
}

// SetIdentityMapAddr places the 1-page identity map region; it must come
// before the first vCPU is created.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	_, err := vm.vmCall(KVM_SET_IDENTITY_MAP_ADDR, unsafe.Pointer(&addr))
	return err
}

// CreateIRQChip creates the in-kernel PICs, IOAPIC and LAPICs.
func (vm *VM) CreateIRQChip() error {
	_, err := vm.vmCallVal(KVM_CREATE_IRQCHIP, 0)
	return err
}

// CreatePIT2 creates the in-kernel i8254 PIT.
func (vm *VM) CreatePIT2(flags uint32) error {
	c := PITConfig{Flags: flags}
	_, err := vm.vmCall(KVM_CREATE_PIT2, unsafe.Pointer(&c))
	return err
}

// SetUserMemoryRegion registers (or, with size 0, deletes) a memory slot.
func (vm *VM) SetUserMemoryRegion(r UserspaceMemoryRegion) error {
	_, err := vm.vmCall(KVM_SET_USER_MEMORY_REGION, unsafe.Pointer(&r))
	return err
}

// IRQLine drives an interrupt line (GSI) of the in-kernel irqchip.
func (vm *VM) IRQLine(gsi uint32, high bool) error {
	l := IRQLevel{IRQ: gsi}
	if high {
		l.Level = 1
	}
	_, err := vm.vmCall(KVM_IRQ_LINE, unsafe.Pointer(&l))
	return err
}

// GetIRQChip reads one irqchip's state (chip is IRQChipPICMaster, ...).
func (vm *VM) GetIRQChip(chip uint32) (IRQChip, error) {
	c := IRQChip{ChipID: chip}
	_, err := vm.vmCall(KVM_GET_IRQCHIP, unsafe.Pointer(&c))
	return c, err
}

// SetIRQChip restores one irqchip's state.
func (vm *VM) SetIRQChip(c IRQChip) error {
	_, err := vm.vmCall(KVM_SET_IRQCHIP, unsafe.Pointer(&c))
	return err
}

// IRQFD binds (or with IRQFDFlagDeassign unbinds) an eventfd to a GSI.
func (vm *VM) IRQFD(f IRQFD) error {
	_, err := vm.vmCall(KVM_IRQFD, unsafe.Pointer(&f))
	return err
}

// IOEventFD registers (or with IOEventFDFlagDeassign removes) an eventfd
// signalled by guest writes to an address.
func (vm *VM) IOEventFD(f IOEventFD) error {
	_, err := vm.vmCall(KVM_IOEVENTFD, unsafe.Pointer(&f))
	return err
}

// SignalMSI injects a message-signalled interrupt.
func (vm *VM) SignalMSI(m MSI) error {
	_, err := vm.vmCall(KVM_SIGNAL_MSI, unsafe.Pointer(&m))
	return err
}

// CreateVCPU creates vCPU id (its APIC id) and maps its kvm_run page;
// mmapSize comes from System.VCPUMmapSize.
func (vm *VM) CreateVCPU(id int, mmapSize int) (*VCPU, error) {
	r, err := vm.vmCallVal(KVM_CREATE_VCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("vCPU %d: %w", id, err)
	}
	fd := int(r)
	mem, err := unix.Mmap(fd, 0, mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vCPU %d: mmap kvm_run: %w", id, err)
	}
	return &VCPU{fd: fd, id: id, run: &Run{mem: mem}}, nil
}

// VCPU is one virtual CPU's fd and its kvm_run page.
type VCPU struct {
	fd  int
	id  int
	run *Run
}

// FD returns the vCPU fd.
func (c *VCPU) FD() int { return c.fd }

// ID returns the vCPU id (its APIC id).
func (c *VCPU) ID() int { return c.id }

// Run returns the shared kvm_run page.
func (c *VCPU) Run() *Run { return c.run }

// Close unmaps kvm_run and closes the vCPU fd.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run.mem)
	if cerr := unix.Close(c.fd); err == nil {
		err = cerr
	}
	return err
}

// RunOnce enters the guest (KVM_RUN) until the next exit. It returns
// unix.EINTR unwrapped when a signal or immediate_exit interrupted it.
func (c *VCPU) RunOnce() error {
	_, err := ioctlVal(c.fd, KVM_RUN, 0)
	if err == unix.EINTR || err == unix.EAGAIN {
		return unix.EINTR
	}
	if err != nil {
		return fmt.Errorf("KVM_RUN: %w", err)
	}
	return nil
}

// GetRegs reads the general-purpose registers.
func (c *VCPU) GetRegs() (Regs, error) {
	var r Regs
	_, err := call(c.fd, KVM_GET_REGS, unsafe.Pointer(&r))
	return r, err
}

// SetRegs writes the general-purpose registers.
func (c *VCPU) SetRegs(r Regs) error {
	_, err := call(c.fd, KVM_SET_REGS, unsafe.Pointer(&r))
	return err
}

// GetSregs reads the special registers.
func (c *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	_, err := call(c.fd, KVM_GET_SREGS, unsafe.Pointer(&s))
	return s, err
}

// SetSregs writes the special registers.
func (c *VCPU) SetSregs(s Sregs) error {
	_, err := call(c.fd, KVM_SET_SREGS, unsafe.Pointer(&s))
	return err
}

// GetFPU reads the x87/SSE state.
func (c *VCPU) GetFPU() (FPU, error) {
	var f FPU
	_, err := call(c.fd, KVM_GET_FPU, unsafe.Pointer(&f))
	return f, err
}

// SetFPU writes the x87/SSE state.
func (c *VCPU) SetFPU(f FPU) error {
	_, err := call(c.fd, KVM_SET_FPU, unsafe.Pointer(&f))
	return err
}

// msrBuf builds struct kvm_msrs.
func msrBuf(entries []MSREntry) []byte {
	buf := make([]byte, 8+len(entries)*int(unsafe.Sizeof(MSREntry{})))
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(entries))
	if len(entries) > 0 {
		copy(unsafe.Slice((*MSREntry)(unsafe.Pointer(&buf[8])), len(entries)), entries)
	}
	return buf
}

// SetMSRs writes model-specific registers; all must be accepted.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	buf := msrBuf(entries)
	n, err := call(c.fd, KVM_SET_MSRS, unsafe.Pointer(&buf[0]))
	if err != nil {
		return err
	}
	if int(n) != len(entries) {
		return fmt.Errorf("KVM_SET_MSRS: MSR %#x rejected (%d of %d set)", entries[n].Index, n, len(entries))
	}
	return nil
}

// GetMSRs reads the MSRs named by entries[i].Index into entries[i].Data.
func (c *VCPU) GetMSRs(entries []MSREntry) error {
	if len(entries) == 0 {
		return nil
	}
	buf := msrBuf(entries)
	n, err := call(c.fd, KVM_GET_MSRS, unsafe.Pointer(&buf[0]))
	if err != nil {
		return err
	}
	copy(entries, unsafe.Slice((*MSREntry)(unsafe.Pointer(&buf[8])), len(entries)))
	if int(n) != len(entries) {
		return fmt.Errorf("KVM_GET_MSRS: MSR %#x unreadable (%d of %d read)", entries[n].Index, n, len(entries))
	}
	return nil
}

// SetCPUID2 sets the CPUID the guest sees on this vCPU.
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	buf := make([]byte, 8+len(entries)*int(unsafe.Sizeof(CPUIDEntry{})))
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(entries))
	if len(entries) > 0 {
		copy(unsafe.Slice((*CPUIDEntry)(unsafe.Pointer(&buf[8])), len(entries)), entries)
	}
	_, err := call(c.fd, KVM_SET_CPUID2, unsafe.Pointer(&buf[0]))
	return err
}

// GetLAPIC reads the local APIC's register page.
func (c *VCPU) GetLAPIC() (LAPICState, error) {
	var l LAPICState
	_, err := call(c.fd, KVM_GET_LAPIC, unsafe.Pointer(&l))
	return l, err
}

// SetLAPIC writes the local APIC's register page.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	_, err := call(c.fd, KVM_SET_LAPIC, unsafe.Pointer(&l))
	return err
}

// GetMPState reads the vCPU's multiprocessing state (MPStateRunnable, ...).
func (c *VCPU) GetMPState() (uint32, error) {
	var s MPState
	_, err := call(c.fd, KVM_GET_MP_STATE, unsafe.Pointer(&s))
	return s.State, err
}

// SetMPState sets the vCPU's multiprocessing state.
func (c *VCPU) SetMPState(state uint32) error {
	s := MPState{State: state}
	_, err := call(c.fd, KVM_SET_MP_STATE, unsafe.Pointer(&s))
	return err
}

// GetVCPUEvents reads pending exceptions, interrupts and NMIs.
func (c *VCPU) GetVCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	_, err := call(c.fd, KVM_GET_VCPU_EVENTS, unsafe.Pointer(&e))
	return e, err
}

// SetVCPUEvents writes pending exceptions, interrupts and NMIs.
func (c *VCPU) SetVCPUEvents(e VCPUEvents) error {
	_, err := call(c.fd, KVM_SET_VCPU_EVENTS, unsafe.Pointer(&e))
	return err
}

// SetSignalMask sets the signal mask in effect while in KVM_RUN (nil
// removes it). sigset is the kernel's 8-byte sigset.
func (c *VCPU) SetSignalMask(sigset *uint64) error {
	if sigset == nil {
		_, err := callVal(c.fd, KVM_SET_SIGNAL_MASK, 0)
		return err
	}
	buf := struct {
		Len uint32
		Set uint64
	}{Len: 8, Set: *sigset}
	// struct kvm_signal_mask { __u32 len; __u8 sigset[]; } is packed: the
	// set follows len directly, so build it byte-wise.
	raw := make([]byte, 12)
	*(*uint32)(unsafe.Pointer(&raw[0])) = buf.Len
	for i := 0; i < 8; i++ {
		raw[4+i] = byte(buf.Set >> (8 * i))
	}
	_, err := call(c.fd, KVM_SET_SIGNAL_MASK, unsafe.Pointer(&raw[0]))
	return err
}

// TSCKHz returns the guest TSC frequency in kHz.
func (c *VCPU) TSCKHz() (uint32, error) {
	r, err := callVal(c.fd, KVM_GET_TSC_KHZ, 0)
	return uint32(r), err
}

// IsPVM reports whether the host's KVM is the PVM nested layer
// (/sys/module/kvm_pvm exists), which needs the fix-ups in package vm.
func IsPVM() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}
