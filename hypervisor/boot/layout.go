// Package boot prepares guest memory for a direct Linux boot in 64-bit mode:
// it loads a bzImage or an ELF vmlinux, places the initrd and the command
// line, builds the zero page (struct boot_params) with an e820 map, writes an
// MP table describing the vCPUs and interrupt routing, and filters the CPUID
// table each vCPU sees. Everything here is a pure function over
// *memory.Guest (or plain values), so it is tested without /dev/kvm.
//
// The engine's arch package owns the CPU state at entry (GDT, identity page
// tables, registers); this package only reserves their addresses in Layout.
package boot

// Fixed guest-physical addresses used for a direct kernel boot. They follow
// Firecracker and Cloud Hypervisor, so a guest sees a familiar machine.
//
//	0x00000-0x004ff  real-mode IVT and BIOS data area (left zero)
//	0x00500          GDT (arch)          0x00520  IDT (arch)
//	0x07000          zero page (boot_params, 4 KiB)
//	0x08ff0          initial stack pointer (arch), grows down from 0x9000
//	0x09000-0x1ffff  page tables for the identity map (arch)
//	0x20000-0x2ffff  kernel command line (NUL terminated)
//	0x9fc00-0xdffff  MP floating pointer, then the configuration table (reserved)
//	0xa0000-0xfffff  VGA hole, option ROMs, ACPI tables at 0xe0000 (reserved)
//	0x100000         kernel load address for kernels without pref_address
//	0xc0000000-4GiB  32-bit MMIO hole: no RAM here (IOAPIC, LAPIC, virtio-mmio)
//	4 GiB..          RAM above the hole
const (
	GDTAddr        = 0x500
	IDTAddr        = 0x520
	ZeroPageAddr   = 0x7000
	ZeroPageSize   = 0x1000
	StackTop       = 0x8ff0
	PageTableStart = 0x9000
	PageTableEnd   = 0x20000
	CmdlineAddr    = 0x20000
	CmdlineMax     = 0x10000 // bytes reserved, including the NUL
	EBDAStart      = 0x9fc00 // last KiB of base memory: MP table lives here
	MPTableAddr    = EBDAStart
	MPTableMax     = 0xe0000 - MPTableAddr // up to the ACPI tables
	LowReservedEnd = 0x100000              // [EBDAStart, LowReservedEnd) is never RAM to the guest
	HighMemStart   = 0x100000
	DefaultLoad    = HighMemStart

	// MMIOHoleStart is where RAM stops below 4 GiB when the guest has more
	// than 3 GiB: [MMIOHoleStart, 4 GiB) holds device MMIO.
	MMIOHoleStart = 0xc0000000
	FourGiB       = 1 << 32

	IOAPICAddr = 0xfec00000
	LAPICAddr  = 0xfee00000
)

// Range is a half-open guest-physical range [Start, Start+Size).
type Range struct {
	Start, Size uint64
}

// End returns the first address after the range.
func (r Range) End() uint64 { return r.Start + r.Size }

// RAMRanges returns where guest RAM of memBytes goes: one range from 0 up to
// MMIOHoleStart, and the remainder from 4 GiB. The engine maps exactly these
// ranges; E820 then derives the guest's memory map from them.
func RAMRanges(memBytes uint64) []Range {
	if memBytes <= MMIOHoleStart {
		return []Range{{0, memBytes}}
	}
	return []Range{{0, MMIOHoleStart}, {FourGiB, memBytes - MMIOHoleStart}}
}
