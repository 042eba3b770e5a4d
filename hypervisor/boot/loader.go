package boot

import (
	"encoding/binary"
	"fmt"

	"vsh/hypervisor/memory"
)

// Kernel formats.
const (
	FormatBzImage = "bzImage"
	FormatELF     = "elf"
)

// Zero page (struct boot_params) offsets outside the setup header.
const (
	zpACPIRSDPAddr     = 0x070
	zpExtRamdiskImage  = 0x0c0
	zpExtRamdiskSize   = 0x0c4
	zpExtCmdLinePtr    = 0x0c8
	zpE820Entries      = 0x1e8
	zpE820Table        = 0x2d0
	e820EntrySize      = 20
	defaultInitrdMax   = 0x7fffffff // boot.rst: for protocols before 2.03, and our ELF default
	defaultCmdlineSize = 2047       // COMMAND_LINE_SIZE-1 of x86 Linux
	elfKernelAlignment = 0x1000000
	initrdAlign        = 0x1000
)

// Kernel is a kernel loaded into guest memory.
type Kernel struct {
	Format string
	// Entry is the guest-physical 64-bit entry point: load address + 0x200
	// for a bzImage, the physical e_entry for an ELF vmlinux. Enter it in
	// long mode with RSI = ZeroPageAddr.
	Entry uint64
	// Extent is the memory the kernel occupies, including what it needs
	// beyond the file (init_size, or the segments' bss).
	Extent Range
	// Protocol is the boot protocol version (0 for ELF).
	Protocol      uint16
	InitrdAddrMax uint64
	CmdlineSize   uint64 // longest command line without the NUL
	header        []byte // setup header to copy into the zero page
}

// LoadKernel detects the image format (ELF vmlinux or bzImage), checks it
// and copies it into guest memory. A bzImage goes to its pref_address (or
// 1 MiB), an ELF kernel's PT_LOAD segments to their physical addresses.
func LoadKernel(g *memory.Guest, image []byte) (*Kernel, error) {
	if len(image) >= 4 && string(image[:4]) == "\x7fELF" {
		return loadELF(g, image)
	}
	return loadBzImage(g, image)
}

func loadELF(g *memory.Guest, image []byte) (*Kernel, error) {
	e, err := ParseELF(image)
	if err != nil {
		return nil, err
	}
	ext := e.extent()
	if ext.Start < HighMemStart {
		return nil, fmt.Errorf("ELF kernel: segment at %#x is below 1 MiB, where boot data lives: %w", ext.Start, ErrBadKernel)
	}
	for _, s := range e.Segments {
		dst, err := g.Slice(s.Paddr, s.Memsz)
		if err != nil {
			return nil, fmt.Errorf("load ELF kernel segment at %#x (%d KiB): guest RAM too small? %w", s.Paddr, s.Memsz>>10, err)
		}
		n := copy(dst, s.Data)
		clear(dst[n:])
	}
	return &Kernel{
		Format:        FormatELF,
		Entry:         e.Entry,
		Extent:        ext,
		InitrdAddrMax: defaultInitrdMax,
		CmdlineSize:   defaultCmdlineSize,
	}, nil
}

func loadBzImage(g *memory.Guest, image []byte) (*Kernel, error) {
	bz, err := ParseBzImage(image)
	if err != nil {
		return nil, err
	}
	h := bz.Header
	addr, err := bz.loadAddress()
	if err != nil {
		return nil, err
	}
	dst, err := g.Slice(addr, uint64(h.InitSize))
	if err != nil && h.Relocatable && addr != DefaultLoad {
		// Too little RAM at pref_address: a relocatable kernel can run
		// from 1 MiB (it moves itself to an aligned address as needed).
		addr = DefaultLoad
		dst, err = g.Slice(addr, uint64(h.InitSize))
	}
	if err != nil {
		return nil, fmt.Errorf("load bzImage at %#x (init_size %d KiB): guest RAM too small? %w", addr, h.InitSize>>10, err)
	}
	n := copy(dst, bz.Kernel)
	clear(dst[n:])
	k := &Kernel{
		Format:        FormatBzImage,
		Entry:         addr + entry64Offset,
		Extent:        Range{addr, uint64(h.InitSize)},
		Protocol:      h.Version,
		InitrdAddrMax: uint64(h.InitrdAddrMax),
		CmdlineSize:   uint64(h.CmdlineSize),
		header:        h.Raw,
	}
	if k.InitrdAddrMax == 0 {
		k.InitrdAddrMax = defaultInitrdMax
	}
	if k.CmdlineSize == 0 {
		k.CmdlineSize = 255 // protocols before 2.06
	}
	return k, nil
}

// PlaceInitrd copies initrd to the highest page-aligned guest address that
// keeps it inside one RAM range above 1 MiB, at or below the kernel's
// initrd_addr_max, and clear of the kernel. It returns where it went.
func PlaceInitrd(g *memory.Guest, k *Kernel, initrd []byte) (Range, error) {
	size := uint64(len(initrd))
	if size == 0 {
		return Range{}, nil
	}
	limit := k.InitrdAddrMax + 1 // first address the initrd may not touch
	best, found := uint64(0), false
	for _, r := range ramRanges(g) {
		lo := max(r.Start, HighMemStart)
		hi := min(r.End(), limit)
		if hi <= lo || hi-lo < size {
			continue
		}
		addr := alignDown(hi-size, initrdAlign)
		if addr < k.Extent.End() && k.Extent.Start < addr+size {
			// Overlaps the kernel: try just below it.
			if k.Extent.Start < lo+size {
				continue
			}
			addr = alignDown(k.Extent.Start-size, initrdAlign)
		}
		if addr < lo {
			continue
		}
		if !found || addr > best {
			best, found = addr, true
		}
	}
	if !found {
		return Range{}, fmt.Errorf("initrd of %d KiB does not fit in guest RAM below %#x next to the kernel at %#x-%#x",
			size>>10, limit, k.Extent.Start, k.Extent.End())
	}
	if err := g.WriteAt(initrd, best); err != nil {
		return Range{}, fmt.Errorf("write initrd at %#x: %w", best, err)
	}
	return Range{best, size}, nil
}

// WriteCmdline stores cmdline, NUL terminated, at CmdlineAddr.
func WriteCmdline(g *memory.Guest, k *Kernel, cmdline string) error {
	limit := min(k.CmdlineSize, CmdlineMax-1)
	if uint64(len(cmdline)) > limit {
		return fmt.Errorf("kernel command line is %d bytes; this kernel accepts at most %d", len(cmdline), limit)
	}
	for i := 0; i < len(cmdline); i++ {
		if cmdline[i] == 0 {
			return fmt.Errorf("kernel command line contains a NUL byte at offset %d", i)
		}
	}
	buf := make([]byte, len(cmdline)+1)
	copy(buf, cmdline)
	if err := g.WriteAt(buf, CmdlineAddr); err != nil {
		return fmt.Errorf("write kernel command line at %#x: %w", CmdlineAddr, err)
	}
	return nil
}

// ZeroPage describes what goes into boot_params besides the kernel's own
// setup header.
type ZeroPage struct {
	Initrd       Range
	ACPIRSDPAddr uint64 // 0: none (Linux then scans 0xe0000-0xfffff)
	E820         []E820Entry
}

// BuildZeroPage returns the 4 KiB boot_params for k: a zeroed page with the
// kernel's setup header copied in (a synthesized one for an ELF kernel) and
// the loader's fields filled: type_of_loader 0xff, loadflags CAN_USE_HEAP,
// cmd_line_ptr, the ramdisk fields (low and ext_ high halves), the ACPI RSDP
// address and the e820 table.
func BuildZeroPage(k *Kernel, zp ZeroPage) ([]byte, error) {
	if len(zp.E820) > maxE820 {
		return nil, fmt.Errorf("zero page: %d e820 entries exceed %d", len(zp.E820), maxE820)
	}
	p := make([]byte, ZeroPageSize)
	le := binary.LittleEndian
	if k.header != nil {
		copy(p[hdrStart:], k.header)
	} else {
		le.PutUint16(p[offBootFlag:], bootFlagMagic)
		le.PutUint32(p[offHeader:], headerMagic)
		le.PutUint16(p[offVersion:], 0x020f)
		p[offLoadflags] = loadedHigh
		le.PutUint32(p[offInitrdAddrMax:], uint32(k.InitrdAddrMax))
		le.PutUint32(p[offKernelAlignment:], elfKernelAlignment)
		le.PutUint32(p[offCmdlineSize:], uint32(k.CmdlineSize))
	}
	le.PutUint16(p[offVidMode:], 0xffff) // "normal"
	p[offTypeOfLoader] = 0xff            // undefined boot loader
	p[offLoadflags] |= canUseHeap
	le.PutUint16(p[offHeapEndPtr:], 0xfe00)
	le.PutUint32(p[offCmdLinePtr:], CmdlineAddr)
	le.PutUint32(p[zpExtCmdLinePtr:], 0)
	le.PutUint32(p[offRamdiskImage:], uint32(zp.Initrd.Start))
	le.PutUint32(p[zpExtRamdiskImage:], uint32(zp.Initrd.Start>>32))
	le.PutUint32(p[offRamdiskSize:], uint32(zp.Initrd.Size))
	le.PutUint32(p[zpExtRamdiskSize:], uint32(zp.Initrd.Size>>32))
	le.PutUint64(p[zpACPIRSDPAddr:], zp.ACPIRSDPAddr)
	p[zpE820Entries] = byte(len(zp.E820))
	for i, e := range zp.E820 {
		o := zpE820Table + i*e820EntrySize
		le.PutUint64(p[o:], e.Addr)
		le.PutUint64(p[o+8:], e.Size)
		le.PutUint32(p[o+16:], e.Type)
	}
	return p, nil
}

// Options is everything a direct Linux boot needs.
type Options struct {
	Kernel  []byte // bzImage or ELF vmlinux file contents
	Initrd  []byte // optional
	Cmdline string
	// ACPIRSDPAddr is written to boot_params.acpi_rsdp_addr when non-zero.
	ACPIRSDPAddr uint64
	// APICIDs, when not empty, also writes an MP table listing one vCPU
	// per APIC id (see APICIDs).
	APICIDs []uint32
}

// Loaded says where Load put things; the arch package enters the kernel at
// Entry in 64-bit mode with RSI = ZeroPage, identity-mapping at least
// Kernel.Extent, the zero page and the command line.
type Loaded struct {
	Format   string
	Entry    uint64
	ZeroPage uint64
	Kernel   Range
	Initrd   Range
	Cmdline  uint64
	E820     []E820Entry
}

// Load loads the kernel, initrd and command line into g and writes the zero
// page (and the MP table when opts.APICIDs is set).
func Load(g *memory.Guest, opts Options) (*Loaded, error) {
	k, err := LoadKernel(g, opts.Kernel)
	if err != nil {
		return nil, err
	}
	initrd, err := PlaceInitrd(g, k, opts.Initrd)
	if err != nil {
		return nil, err
	}
	if err := WriteCmdline(g, k, opts.Cmdline); err != nil {
		return nil, err
	}
	e820, err := E820(ramRanges(g))
	if err != nil {
		return nil, err
	}
	zp, err := BuildZeroPage(k, ZeroPage{Initrd: initrd, ACPIRSDPAddr: opts.ACPIRSDPAddr, E820: e820})
	if err != nil {
		return nil, err
	}
	if err := g.WriteAt(zp, ZeroPageAddr); err != nil {
		return nil, fmt.Errorf("write zero page at %#x: %w", ZeroPageAddr, err)
	}
	if len(opts.APICIDs) > 0 {
		if err := WriteMPTable(g, opts.APICIDs); err != nil {
			return nil, err
		}
	}
	return &Loaded{
		Format:   k.Format,
		Entry:    k.Entry,
		ZeroPage: ZeroPageAddr,
		Kernel:   k.Extent,
		Initrd:   initrd,
		Cmdline:  CmdlineAddr,
		E820:     e820,
	}, nil
}

func ramRanges(g *memory.Guest) []Range {
	regions := g.Regions()
	out := make([]Range, len(regions))
	for i, r := range regions {
		out[i] = Range{r.GPA, uint64(len(r.Host))}
	}
	return out
}

func alignDown(v, a uint64) uint64 { return v &^ (a - 1) }
