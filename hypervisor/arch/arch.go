// Package arch sets up x86-64 CPU state for entering a guest directly in
// 64-bit long mode: identity-mapped page tables and a GDT written into guest
// memory, the matching special registers, boot MSRs, FPU defaults and the
// local APIC's LINT0/LINT1 wiring. Everything here is pure data
// manipulation, testable without /dev/kvm.
package arch

import (
	"encoding/binary"
	"fmt"

	"vsh/hypervisor/kvm"
	"vsh/hypervisor/memory"
)

// Guest-physical addresses of the structures this package writes. They
// follow Firecracker's low-memory layout (zero page 0x7000, boot stack
// below 0x9000, command line at 0x20000 are left to the boot loader).
const (
	GDTAddr  = 0x500
	IDTAddr  = 0x540 // an empty IDT: any exception before the kernel sets its own triple-faults
	PML4Addr = 0x9000
	// PageTablesEnd is the end of the page tables for the default 4 GiB map
	// (PML4, PDPT and four page directories).
	PageTablesEnd = PML4Addr + 6*0x1000
)

// GDT selectors. The kernel ones are the Linux boot protocol's __BOOT_CS
// and __BOOT_DS; the user ones are Linux's __USER_DS and __USER_CS.
const (
	SelKernelCode = 0x10
	SelKernelData = 0x18
	SelTSS        = 0x20
	SelUserData   = 0x28 | 3
	SelUserCode   = 0x30 | 3
)

// Control register and EFER bits.
const (
	CR0PE = 1 << 0
	CR0MP = 1 << 1
	CR0ET = 1 << 4
	CR0NE = 1 << 5
	CR0WP = 1 << 16
	CR0AM = 1 << 18
	CR0PG = 1 << 31

	CR4PAE        = 1 << 5
	CR4OSFXSR     = 1 << 9
	CR4OSXMMEXCPT = 1 << 10

	EFERSCE = 1 << 0
	EFERLME = 1 << 8
	EFERLMA = 1 << 10

	// RFLAGSReserved is bit 1, always set.
	RFLAGSReserved = 1 << 1
	// RFLAGSIOPL3 lets ring-3 code use in/out directly.
	RFLAGSIOPL3 = 3 << 12
)

// Page-table entry bits.
const (
	pteP  = 1 << 0
	pteRW = 1 << 1
	pteUS = 1 << 2
	ptePS = 1 << 7
)

const (
	gib = 1 << 30
	mib = 1 << 20
)

// PageTableBytes returns identity page tables mapping [0, top) with 2 MiB
// pages, to be placed at guest-physical base: a PML4, one PDPT and one page
// directory per GiB, contiguous. top is rounded up to a whole GiB and must
// be at most 512 GiB. user sets the U/S bit at every level so ring-3 code
// can use the mapping too. It returns the bytes; CR3 is base.
func PageTableBytes(base, top uint64, user bool) ([]byte, error) {
	if base%0x1000 != 0 {
		return nil, fmt.Errorf("page tables at %#x: not 4 KiB aligned", base)
	}
	if top == 0 || top > 512*gib {
		return nil, fmt.Errorf("identity map of %#x bytes: must be between 1 byte and 512 GiB", top)
	}
	ndirs := (top + gib - 1) / gib
	buf := make([]byte, (2+ndirs)*0x1000)
	flags := uint64(pteP | pteRW)
	if user {
		flags |= pteUS
	}
	pdpt := base + 0x1000
	binary.LittleEndian.PutUint64(buf[0:], pdpt|flags)
	for d := uint64(0); d < ndirs; d++ {
		pd := base + 0x2000 + d*0x1000
		binary.LittleEndian.PutUint64(buf[0x1000+8*d:], pd|flags)
		for i := uint64(0); i < 512; i++ {
			phys := d*gib + i*2*mib
			binary.LittleEndian.PutUint64(buf[0x2000+d*0x1000+8*i:], phys|flags|ptePS)
		}
	}
	return buf, nil
}

// SetupPageTables writes identity page tables for [0, top) at PML4Addr and
// returns the CR3 value.
func SetupPageTables(mem *memory.Guest, top uint64, user bool) (uint64, error) {
	b, err := PageTableBytes(PML4Addr, top, user)
	if err != nil {
		return 0, err
	}
	if err := mem.WriteAt(b, PML4Addr); err != nil {
		return 0, fmt.Errorf("write page tables: %w", err)
	}
	return PML4Addr, nil
}

// GDTEntry encodes a segment descriptor from the kernel's gdt_entry(flags,
// base, limit) convention: flags holds the access byte in bits 0-7 and the
// G/DB/L/AVL nibble in bits 12-15.
func GDTEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<(56-24) |
		uint64(flags&0xf0ff)<<40 |
		uint64(limit&0x000f0000)<<(48-16) |
		uint64(base&0x00ffffff)<<16 |
		uint64(limit&0x0000ffff)
}

// The GDT: null, null, kernel code64, kernel data, TSS, user data, user code64.
var gdt = [...]uint64{
	0,
	0,
	GDTEntry(0xa09b, 0, 0xfffff), // 0x10: kernel code, L=1, DPL 0
	GDTEntry(0xc093, 0, 0xfffff), // 0x18: kernel data, DPL 0
	GDTEntry(0x808b, 0, 0xfffff), // 0x20: busy 64-bit TSS (VMX needs a valid TR)
	GDTEntry(0xc0f3, 0, 0xfffff), // 0x28: user data, DPL 3
	GDTEntry(0xa0fb, 0, 0xfffff), // 0x30: user code, L=1, DPL 3
}

// GDTBytes returns the GDT's bytes.
func GDTBytes() []byte {
	b := make([]byte, 8*len(gdt))
	for i, e := range gdt {
		binary.LittleEndian.PutUint64(b[8*i:], e)
	}
	return b
}

// SegmentFromGDT decodes a descriptor into the kvm_segment form.
func SegmentFromGDT(entry uint64, selector uint16) kvm.Segment {
	s := kvm.Segment{
		Base:     (entry>>16)&0xffffff | (entry>>56&0xff)<<24,
		Limit:    uint32(entry&0xffff | (entry>>48&0xf)<<16),
		Selector: selector,
		Type:     uint8(entry >> 40 & 0xf),
		S:        uint8(entry >> 44 & 1),
		DPL:      uint8(entry >> 45 & 3),
		Present:  uint8(entry >> 47 & 1),
		AVL:      uint8(entry >> 52 & 1),
		L:        uint8(entry >> 53 & 1),
		DB:       uint8(entry >> 54 & 1),
		G:        uint8(entry >> 55 & 1),
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	return s
}

// SetupGDT writes the GDT and an empty IDT into guest memory.
func SetupGDT(mem *memory.Guest) error {
	if err := mem.WriteAt(GDTBytes(), GDTAddr); err != nil {
		return fmt.Errorf("write GDT: %w", err)
	}
	if err := mem.PutUint64(IDTAddr, 0); err != nil {
		return fmt.Errorf("write IDT: %w", err)
	}
	return nil
}

// LongModeSregs puts sregs into 64-bit long mode with paging through cr3
// and segments from the GDT this package writes. With user set, CS/SS and
// the data segments are the DPL-3 ones, so the vCPU starts in ring 3 (pair
// it with RFLAGSIOPL3 to allow port I/O there).
func LongModeSregs(sregs *kvm.Sregs, cr3 uint64, user bool) {
	code := SegmentFromGDT(gdt[SelKernelCode>>3], SelKernelCode)
	data := SegmentFromGDT(gdt[SelKernelData>>3], SelKernelData)
	if user {
		code = SegmentFromGDT(gdt[SelUserCode>>3], SelUserCode)
		data = SegmentFromGDT(gdt[SelUserData>>3], SelUserData)
	}
	sregs.CS = code
	sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = data, data, data, data, data
	sregs.TR = SegmentFromGDT(gdt[SelTSS>>3], SelTSS)
	sregs.GDT = kvm.DTable{Base: GDTAddr, Limit: uint16(8*len(gdt) - 1)}
	sregs.IDT = kvm.DTable{Base: IDTAddr, Limit: 0}
	sregs.CR0 = CR0PE | CR0MP | CR0ET | CR0NE | CR0WP | CR0AM | CR0PG
	sregs.CR3 = cr3
	sregs.CR4 = CR4PAE | CR4OSFXSR | CR4OSXMMEXCPT
	sregs.EFER = EFERLME | EFERLMA
}

// MSR numbers used at boot.
const (
	MSRIA32SysenterCS  = 0x174
	MSRIA32SysenterESP = 0x175
	MSRIA32SysenterEIP = 0x176
	MSRStar            = 0xc0000081
	MSRLStar           = 0xc0000082
	MSRCStar           = 0xc0000083
	MSRSyscallMask     = 0xc0000084
	MSRKernelGSBase    = 0xc0000102
	MSRIA32TSC         = 0x10
	MSRIA32MiscEnable  = 0x1a0
	MSRMTRRDefType     = 0x2ff

	miscEnableFastString = 1 << 0
	mtrrEnable           = 1 << 11
	mtrrMemTypeWB        = 6
)

// BootMSRs returns the MSR values a vCPU starts with (Firecracker's set):
// SYSENTER/SYSCALL MSRs and the TSC zeroed, fast strings on, and MTRRs
// enabled with write-back as the default type.
func BootMSRs() []kvm.MSREntry {
	return []kvm.MSREntry{
		{Index: MSRIA32SysenterCS},
		{Index: MSRIA32SysenterESP},
		{Index: MSRIA32SysenterEIP},
		{Index: MSRStar},
		{Index: MSRCStar},
		{Index: MSRKernelGSBase},
		{Index: MSRSyscallMask},
		{Index: MSRLStar},
		{Index: MSRIA32TSC},
		{Index: MSRIA32MiscEnable, Data: miscEnableFastString},
		{Index: MSRMTRRDefType, Data: mtrrEnable | mtrrMemTypeWB},
	}
}

// BootFPU returns the x87/SSE state at reset: FCW 0x37f, MXCSR 0x1f80.
func BootFPU() kvm.FPU {
	return kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}
}

// Local APIC register offsets and delivery modes.
const (
	APICLVT0 = 0x350
	APICLVT1 = 0x360

	APICModeFixed  = 0
	APICModeNMI    = 4
	APICModeExtINT = 7
)

// SetLINT wires LINT0 to ExtINT (the PIC's output) and LINT1 to NMI, as a
// PC's firmware would, by editing the delivery-mode bits (8-10) of LVT0 and
// LVT1 in the LAPIC register page.
func SetLINT(l *kvm.LAPICState) {
	setMode := func(off int, mode uint32) {
		v := binary.LittleEndian.Uint32(l.Regs[off:])
		v = v&^0x700 | mode<<8
		binary.LittleEndian.PutUint32(l.Regs[off:], v)
	}
	setMode(APICLVT0, APICModeExtINT)
	setMode(APICLVT1, APICModeNMI)
}
