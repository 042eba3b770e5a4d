// Package kvm is a thin, cgo-free binding to the Linux KVM API on x86-64:
// named ioctl numbers, Go structs laid out exactly like the kernel's, and
// wrappers that turn each ioctl into a method returning a wrapped error.
// It knows nothing about machines or devices; the vm package builds those.
package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl direction bits and field shifts, as in <asm-generic/ioctl.h>.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30

	kvmio = 0xAE
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | kvmio<<iocTypeShift | nr<<iocNRShift | size<<iocSizeShift
}
func io(nr uintptr) uintptr         { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr  { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr  { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }

// Ioctl request numbers. The sizes are those of the Go structs below, which
// the tests check against the kernel headers.
var (
	// System ioctls (on the /dev/kvm fd).
	KVM_GET_API_VERSION     = io(0x00)
	KVM_CREATE_VM           = io(0x01)
	KVM_CHECK_EXTENSION     = io(0x03)
	KVM_GET_VCPU_MMAP_SIZE  = io(0x04)
	KVM_GET_SUPPORTED_CPUID = iowr(0x05, 8)
	KVM_GET_MSR_INDEX_LIST  = iowr(0x02, 4)

	// VM ioctls.
	KVM_CREATE_VCPU            = io(0x41)
	KVM_SET_USER_MEMORY_REGION = iow(0x46, unsafe.Sizeof(UserspaceMemoryRegion{}))
	KVM_SET_TSS_ADDR           = io(0x47)
	KVM_SET_IDENTITY_MAP_ADDR  = iow(0x48, 8)
	KVM_CREATE_IRQCHIP         = io(0x60)
	KVM_IRQ_LINE               = iow(0x61, unsafe.Sizeof(IRQLevel{}))
	KVM_GET_IRQCHIP            = iowr(0x62, unsafe.Sizeof(IRQChip{}))
	KVM_SET_IRQCHIP            = ior(0x63, unsafe.Sizeof(IRQChip{}))
	KVM_IRQ_LINE_STATUS        = iowr(0x67, unsafe.Sizeof(IRQLevel{}))
	KVM_IRQFD                  = iow(0x76, unsafe.Sizeof(IRQFD{}))
	KVM_CREATE_PIT2            = iow(0x77, unsafe.Sizeof(PITConfig{}))
	KVM_IOEVENTFD              = iow(0x79, unsafe.Sizeof(IOEventFD{}))
	KVM_SIGNAL_MSI             = iow(0xa5, unsafe.Sizeof(MSI{}))

	// vCPU ioctls.
	KVM_RUN             = io(0x80)
	KVM_GET_REGS        = ior(0x81, unsafe.Sizeof(Regs{}))
	KVM_SET_REGS        = iow(0x82, unsafe.Sizeof(Regs{}))
	KVM_GET_SREGS       = ior(0x83, unsafe.Sizeof(Sregs{}))
	KVM_SET_SREGS       = iow(0x84, unsafe.Sizeof(Sregs{}))
	KVM_GET_MSRS        = iowr(0x88, 8)
	KVM_SET_MSRS        = iow(0x89, 8)
	KVM_SET_SIGNAL_MASK = iow(0x8b, 4)
	KVM_GET_FPU         = ior(0x8c, unsafe.Sizeof(FPU{}))
	KVM_SET_FPU         = iow(0x8d, unsafe.Sizeof(FPU{}))
	KVM_GET_LAPIC       = ior(0x8e, unsafe.Sizeof(LAPICState{}))
	KVM_SET_LAPIC       = iow(0x8f, unsafe.Sizeof(LAPICState{}))
	KVM_SET_CPUID2      = iow(0x90, 8)
	KVM_GET_CPUID2      = iowr(0x91, 8)
	KVM_GET_MP_STATE    = ior(0x98, unsafe.Sizeof(MPState{}))
	KVM_SET_MP_STATE    = iow(0x99, unsafe.Sizeof(MPState{}))
	KVM_GET_VCPU_EVENTS = ior(0x9f, unsafe.Sizeof(VCPUEvents{}))
	KVM_SET_VCPU_EVENTS = iow(0xa0, unsafe.Sizeof(VCPUEvents{}))
	KVM_GET_TSC_KHZ     = io(0xa3)
)

// APIVersion is the only KVM API version there has ever been.
const APIVersion = 12

// ioctlPtr issues one ioctl whose argument is a pointer, retrying on EINTR
// (except for KVM_RUN, whose EINTR the caller must see). The pointer is
// converted to uintptr inside the Syscall expression, as unsafe.Pointer's
// rules require.
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if errno == unix.EINTR && req != KVM_RUN {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlVal issues one ioctl whose argument is an integer.
func ioctlVal(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == unix.EINTR && req != KVM_RUN {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlName names a request for error messages.
func ioctlName(req uintptr) string {
	for name, v := range map[string]uintptr{
		"KVM_GET_API_VERSION": KVM_GET_API_VERSION, "KVM_CREATE_VM": KVM_CREATE_VM,
		"KVM_CHECK_EXTENSION": KVM_CHECK_EXTENSION, "KVM_GET_VCPU_MMAP_SIZE": KVM_GET_VCPU_MMAP_SIZE,
		"KVM_GET_SUPPORTED_CPUID": KVM_GET_SUPPORTED_CPUID, "KVM_CREATE_VCPU": KVM_CREATE_VCPU,
		"KVM_SET_USER_MEMORY_REGION": KVM_SET_USER_MEMORY_REGION, "KVM_SET_TSS_ADDR": KVM_SET_TSS_ADDR,
		"KVM_SET_IDENTITY_MAP_ADDR": KVM_SET_IDENTITY_MAP_ADDR, "KVM_CREATE_IRQCHIP": KVM_CREATE_IRQCHIP,
		"KVM_IRQ_LINE": KVM_IRQ_LINE, "KVM_GET_IRQCHIP": KVM_GET_IRQCHIP, "KVM_SET_IRQCHIP": KVM_SET_IRQCHIP,
		"KVM_IRQFD": KVM_IRQFD, "KVM_CREATE_PIT2": KVM_CREATE_PIT2, "KVM_IOEVENTFD": KVM_IOEVENTFD,
		"KVM_SIGNAL_MSI": KVM_SIGNAL_MSI, "KVM_RUN": KVM_RUN, "KVM_GET_REGS": KVM_GET_REGS,
		"KVM_SET_REGS": KVM_SET_REGS, "KVM_GET_SREGS": KVM_GET_SREGS, "KVM_SET_SREGS": KVM_SET_SREGS,
		"KVM_GET_MSRS": KVM_GET_MSRS, "KVM_SET_MSRS": KVM_SET_MSRS, "KVM_SET_SIGNAL_MASK": KVM_SET_SIGNAL_MASK,
		"KVM_GET_FPU": KVM_GET_FPU, "KVM_SET_FPU": KVM_SET_FPU, "KVM_GET_LAPIC": KVM_GET_LAPIC,
		"KVM_SET_LAPIC": KVM_SET_LAPIC, "KVM_SET_CPUID2": KVM_SET_CPUID2, "KVM_GET_CPUID2": KVM_GET_CPUID2,
		"KVM_GET_MP_STATE": KVM_GET_MP_STATE, "KVM_SET_MP_STATE": KVM_SET_MP_STATE,
		"KVM_GET_VCPU_EVENTS": KVM_GET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS": KVM_SET_VCPU_EVENTS,
		"KVM_GET_TSC_KHZ": KVM_GET_TSC_KHZ, "KVM_IRQ_LINE_STATUS": KVM_IRQ_LINE_STATUS,
	} {
		if v == req {
			return name
		}
	}
	return fmt.Sprintf("ioctl %#x", req)
}

// call wraps ioctl with the request's name in the error.
func call(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	r, err := ioctlPtr(fd, req, arg)
	if err != nil {
		return r, fmt.Errorf("%s: %w", ioctlName(req), err)
	}
	return r, nil
}

// callVal is call with a plain integer argument.
func callVal(fd int, req, arg uintptr) (uintptr, error) {
	r, err := ioctlVal(fd, req, arg)
	if err != nil {
		return r, fmt.Errorf("%s: %w", ioctlName(req), err)
	}
	return r, nil
}
