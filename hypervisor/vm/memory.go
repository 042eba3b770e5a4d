package vm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/memory"
)

// Guest-physical layout of the machine. RAM starts at 0; above 3 GiB it
// continues at 4 GiB, leaving [PCIHoleStart, 4 GiB) for device MMIO.
const (
	PCIHoleStart = 0xc0000000
	FourGiB      = 1 << 32

	// VirtioMMIOBase is the first virtio-mmio slot; slots are
	// VirtioMMIOSlotSize apart, up to VirtioMMIOMaxSlots of them.
	VirtioMMIOBase     = 0xd0000000
	VirtioMMIOSlotSize = 0x1000
	VirtioMMIOMaxSlots = 64

	IOAPICAddr = 0xfec00000
	LAPICAddr  = 0xfee00000

	// TSSAddr and IdentityMapAddr are KVM's private pages (Intel hosts
	// need them for real-mode emulation), just below the BIOS area.
	TSSAddr         = 0xfffbd000
	IdentityMapAddr = 0xfffbc000
)

// hugePageSize is the hugetlb page size guest memory is rounded to.
const hugePageSize = 2 << 20

// guestRAM is the host mapping behind guest memory.
type guestRAM struct {
	mapping []byte
	regions []memory.Region
}

// allocRAM maps size bytes of anonymous memory, lazily (MAP_NORESERVE: a
// page costs nothing until the guest touches it), and splits it around the
// 32-bit PCI hole.
func allocRAM(size uint64, huge, noShare bool) (*guestRAM, error) {
	if size == 0 {
		return nil, errors.New("guest memory size is 0")
	}
	if size%0x1000 != 0 {
		return nil, fmt.Errorf("guest memory size %d is not a multiple of 4 KiB", size)
	}
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
	if huge {
		if size%hugePageSize != 0 {
			return nil, fmt.Errorf("guest memory size %d is not a multiple of the 2 MiB huge page size", size)
		}
		// Without MAP_NORESERVE the kernel reserves the huge pages now, so
		// a shortage fails here instead of as SIGBUS on a guest access.
		flags = flags&^unix.MAP_NORESERVE | unix.MAP_HUGETLB
	}
	m, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		if huge {
			return nil, fmt.Errorf("map %d MiB of guest memory in huge pages: %w (reserve 2 MiB pages first, e.g. sysctl vm.nr_hugepages=%d)", size>>20, err, size/hugePageSize)
		}
		return nil, fmt.Errorf("map %d MiB of guest memory: %w", size>>20, err)
	}
	if !huge {
		// KSM is best effort: MADV_MERGEABLE fails where KSM is not built in.
		advice := unix.MADV_MERGEABLE
		if noShare {
			advice = unix.MADV_UNMERGEABLE
		}
		_ = unix.Madvise(m, advice)
	}
	r := &guestRAM{mapping: m}
	if size <= PCIHoleStart {
		r.regions = []memory.Region{{GPA: 0, Host: m}}
	} else {
		r.regions = []memory.Region{
			{GPA: 0, Host: m[:PCIHoleStart:PCIHoleStart]},
			{GPA: FourGiB, Host: m[PCIHoleStart:]},
		}
	}
	return r, nil
}

// discard gives the memory back to the host; it reads as zero afterwards.
func (r *guestRAM) discard() error {
	if err := unix.Madvise(r.mapping, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("discard guest memory: %w", err)
	}
	return nil
}

func (r *guestRAM) free() error {
	if r.mapping == nil {
		return nil
	}
	err := unix.Munmap(r.mapping)
	r.mapping = nil
	return err
}

// hostAddr is the host virtual address of a mapping, for
// KVM_SET_USER_MEMORY_REGION.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
