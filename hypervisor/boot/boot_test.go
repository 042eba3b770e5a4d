package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vsh/hypervisor"
	"vsh/hypervisor/memory"
)

var le = binary.LittleEndian

// newGuest returns guest memory laid out as RAMRanges(size) would be,
// backed by ordinary Go memory.
func newGuest(t testing.TB, ranges ...Range) *memory.Guest {
	t.Helper()
	var regions []memory.Region
	for _, r := range ranges {
		regions = append(regions, memory.Region{GPA: r.Start, Host: make([]byte, r.Size)})
	}
	g, err := memory.New(regions...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

type bzOpts struct {
	version     uint16
	xload       uint16
	loadflags   byte
	pref        uint64
	initSize    uint32
	relocatable bool
	setupSects  byte
	payload     int
}

// makeBzImage builds a minimal bzImage with the given header fields.
func makeBzImage(o bzOpts) []byte {
	sects := int(o.setupSects)
	if sects == 0 {
		sects = 4
	}
	b := make([]byte, (sects+1)*512+o.payload)
	b[offSetupSects] = o.setupSects
	le.PutUint16(b[offBootFlag:], bootFlagMagic)
	b[0x200] = 0xeb                // jmp
	b[0x201] = byte(0x26a - 0x202) // header ends at 0x26a
	le.PutUint32(b[offHeader:], headerMagic)
	le.PutUint16(b[offVersion:], o.version)
	b[offLoadflags] = o.loadflags
	le.PutUint32(b[offInitrdAddrMax:], 0x7fffffff)
	le.PutUint32(b[offKernelAlignment:], 0x200000)
	if o.relocatable {
		b[offRelocatable] = 1
	}
	le.PutUint16(b[offXLoadflags:], o.xload)
	le.PutUint32(b[offCmdlineSize:], 2047)
	le.PutUint64(b[offPrefAddress:], o.pref)
	le.PutUint32(b[offInitSize:], o.initSize)
	for i := (sects + 1) * 512; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

func goodBz() bzOpts {
	return bzOpts{version: 0x020f, xload: xlfKernel64 | xlfCanBeLoadedAbove, loadflags: loadedHigh,
		pref: 0x1000000, initSize: 0x400000, relocatable: true, setupSects: 27, payload: 0x10000}
}

func TestParseBzImageErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*bzOpts, []byte) []byte
		want string
	}{
		{"ok", func(o *bzOpts, b []byte) []byte { return b }, ""},
		{"truncated", func(o *bzOpts, b []byte) []byte { return b[:0x200] }, "shorter than the setup header"},
		{"no boot flag", func(o *bzOpts, b []byte) []byte { b[offBootFlag] = 0; return b }, "0xaa55"},
		{"no HdrS", func(o *bzOpts, b []byte) []byte { b[offHeader] = 'X'; return b }, "HdrS"},
		{"old protocol", func(o *bzOpts, b []byte) []byte { le.PutUint16(b[offVersion:], 0x020b); return b }, "2.11 is older than 2.12"},
		{"zImage", func(o *bzOpts, b []byte) []byte { b[offLoadflags] = 0; return b }, "not loaded high"},
		{"no 64-bit entry", func(o *bzOpts, b []byte) []byte { le.PutUint16(b[offXLoadflags:], 0); return b }, "XLF_KERNEL_64"},
		{"no payload", func(o *bzOpts, b []byte) []byte { return b[:28*512] }, "no protected-mode kernel"},
		{"init_size zero", func(o *bzOpts, b []byte) []byte { le.PutUint32(b[offInitSize:], 0); return b }, "init_size is zero"},
		{"init_size small", func(o *bzOpts, b []byte) []byte { le.PutUint32(b[offInitSize:], 16); return b }, "larger than init_size"},
		{"bad alignment", func(o *bzOpts, b []byte) []byte { le.PutUint32(b[offKernelAlignment:], 3); return b }, "power of two"},
		{"header past zero page", func(o *bzOpts, b []byte) []byte { b[0x201] = 0x7f; return b[:0x270] }, "runs past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goodBz()
			b := tt.mod(&o, makeBzImage(o))
			bz, err := ParseBzImage(b)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if bz.Header.Version != 0x020f || bz.Header.PrefAddress != 0x1000000 || len(bz.Kernel) != 0x10000 {
					t.Fatalf("header %+v, kernel %d bytes", bz.Header, len(bz.Kernel))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadKernel) {
				t.Fatalf("err = %v, want one containing %q wrapping ErrBadKernel", err, tt.want)
			}
		})
	}
}

func TestLoadBzImageAndZeroPage(t *testing.T) {
	g := newGuest(t, RAMRanges(256<<20)...)
	img := makeBzImage(goodBz())
	initrd := []byte(strings.Repeat("initrd", 1000))
	l, err := Load(g, Options{Kernel: img, Initrd: initrd, Cmdline: "console=ttyS0 panic=1", ACPIRSDPAddr: 0xe0000, APICIDs: []uint32{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Format != FormatBzImage || l.Entry != 0x1000200 || l.Kernel != (Range{0x1000000, 0x400000}) {
		t.Fatalf("loaded %+v", l)
	}
	// The protected-mode kernel is at the load address, the rest of
	// init_size zeroed.
	got, _ := g.Slice(0x1000000, 0x10000)
	if string(got) != string(img[28*512:]) {
		t.Fatal("kernel bytes differ at the load address")
	}
	// Initrd: page aligned, highest possible, inside RAM.
	wantInitrd := alignDown(256<<20-uint64(len(initrd)), 4096)
	if l.Initrd != (Range{wantInitrd, uint64(len(initrd))}) {
		t.Fatalf("initrd at %+v, want %#x", l.Initrd, wantInitrd)
	}
	back := make([]byte, len(initrd))
	_ = g.ReadAt(back, l.Initrd.Start)
	if string(back) != string(initrd) {
		t.Fatal("initrd bytes differ")
	}
	cmd := make([]byte, 22)
	_ = g.ReadAt(cmd, CmdlineAddr)
	if string(cmd) != "console=ttyS0 panic=1\x00" {
		t.Fatalf("cmdline %q", cmd)
	}
	zp, _ := g.Slice(ZeroPageAddr, ZeroPageSize)
	checks := []struct {
		name string
		off  int
		size int
		want uint64
	}{
		{"acpi_rsdp_addr", 0x070, 8, 0xe0000},
		{"ext_ramdisk_image", 0x0c0, 4, 0},
		{"ext_ramdisk_size", 0x0c4, 4, 0},
		{"ext_cmd_line_ptr", 0x0c8, 4, 0},
		{"e820_entries", 0x1e8, 1, 3},
		{"sentinel", 0x1ef, 1, 0},
		{"setup_sects", 0x1f1, 1, 27},
		{"vid_mode", 0x1fa, 2, 0xffff},
		{"boot_flag", 0x1fe, 2, 0xaa55},
		{"header", 0x202, 4, 0x53726448},
		{"version", 0x206, 2, 0x020f},
		{"type_of_loader", 0x210, 1, 0xff},
		{"loadflags", 0x211, 1, 0x81},
		{"ramdisk_image", 0x218, 4, wantInitrd},
		{"ramdisk_size", 0x21c, 4, uint64(len(initrd))},
		{"heap_end_ptr", 0x224, 2, 0xfe00},
		{"cmd_line_ptr", 0x228, 4, 0x20000},
		{"pref_address", 0x258, 8, 0x1000000},
		{"init_size", 0x260, 4, 0x400000},
		{"e820[0].addr", 0x2d0, 8, 0},
		{"e820[0].size", 0x2d8, 8, 0x9fc00},
		{"e820[0].type", 0x2e0, 4, 1},
		{"e820[1].addr", 0x2e4, 8, 0x9fc00},
		{"e820[1].type", 0x2f4, 4, 2},
		{"e820[2].addr", 0x2f8, 8, 0x100000},
		{"e820[2].size", 0x300, 8, 256<<20 - 0x100000},
		{"e820[3].type (none)", 0x31c, 4, 0},
	}
	for _, c := range checks {
		var v uint64
		switch c.size {
		case 1:
			v = uint64(zp[c.off])
		case 2:
			v = uint64(le.Uint16(zp[c.off:]))
		case 4:
			v = uint64(le.Uint32(zp[c.off:]))
		case 8:
			v = le.Uint64(zp[c.off:])
		}
		if v != c.want {
			t.Errorf("%s at %#x = %#x, want %#x", c.name, c.off, v, c.want)
		}
	}
	// The MP table was written too.
	mp, _ := g.Slice(MPTableAddr, 4)
	if string(mp) != "_MP_" {
		t.Errorf("no MP floating pointer at %#x", MPTableAddr)
	}
}

func TestLoadBzImageFallsBackTo1MiB(t *testing.T) {
	// 16 MiB of RAM cannot hold init_size at pref_address 16 MiB; a
	// relocatable kernel then goes to 1 MiB.
	g := newGuest(t, Range{0, 16 << 20})
	l, err := Load(g, Options{Kernel: makeBzImage(goodBz())})
	if err != nil {
		t.Fatal(err)
	}
	if l.Entry != 0x100200 {
		t.Fatalf("entry %#x, want 0x100200", l.Entry)
	}
	o := goodBz()
	o.relocatable = false
	if _, err := Load(g, Options{Kernel: makeBzImage(o)}); err == nil || !strings.Contains(err.Error(), "guest RAM too small") {
		t.Fatalf("non-relocatable kernel above RAM: err = %v", err)
	}
}

func TestInitrdPlacement(t *testing.T) {
	k := &Kernel{Extent: Range{0x1000000, 0x400000}, InitrdAddrMax: 0x7fffffff}
	tests := []struct {
		name   string
		ram    []Range
		size   uint64
		want   uint64
		errSub string
	}{
		{"top of small RAM", RAMRanges(64 << 20), 0x1800, 64<<20 - 0x2000, ""},
		{"below initrd_addr_max", RAMRanges(6 << 30), 0x100000, 0x7fffffff + 1 - 0x100000, ""},
		{"below the kernel when above is full", RAMRanges(0x1400000 + 0x1000), 0x200000, 0x1000000 - 0x200000, ""},
		{"too big", RAMRanges(32 << 20), 64 << 20, 0, "does not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sparse: only allocate what is needed by using a big region
			// only when the test needs one.
			g := newGuest(t, tt.ram...)
			r, err := PlaceInitrd(g, k, make([]byte, tt.size))
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("err = %v, want %q", err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Start != tt.want {
				t.Fatalf("initrd at %#x, want %#x", r.Start, tt.want)
			}
			if r.Start < k.Extent.End() && k.Extent.Start < r.End() {
				t.Fatal("initrd overlaps the kernel")
			}
		})
	}
}

func TestE820(t *testing.T) {
	tests := []struct {
		name string
		mem  uint64
		want []E820Entry
	}{
		{"128 MiB", 128 << 20, []E820Entry{
			{0, 0x9fc00, E820RAM}, {0x9fc00, 0x60400, E820Reserved}, {0x100000, 127 << 20, E820RAM}}},
		{"3 GiB exactly", 3 << 30, []E820Entry{
			{0, 0x9fc00, E820RAM}, {0x9fc00, 0x60400, E820Reserved}, {0x100000, 3<<30 - 0x100000, E820RAM}}},
		{"6 GiB", 6 << 30, []E820Entry{
			{0, 0x9fc00, E820RAM}, {0x9fc00, 0x60400, E820Reserved}, {0x100000, 3<<30 - 0x100000, E820RAM},
			{4 << 30, 3 << 30, E820RAM}}},
		{"512 KiB", 512 << 10, []E820Entry{{0, 512 << 10, E820RAM}, {0x9fc00, 0x60400, E820Reserved}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := E820(RAMRanges(tt.mem))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			var ram uint64
			for _, e := range got {
				if e.Type == E820RAM {
					ram += e.Size
				}
			}
			lost := uint64(0)
			if tt.mem > EBDAStart {
				lost = min(tt.mem, LowReservedEnd) - EBDAStart
			}
			if ram != tt.mem-lost {
				t.Errorf("RAM in map %#x, want %#x", ram, tt.mem-lost)
			}
		})
	}
}

func TestRAMRanges(t *testing.T) {
	if got := RAMRanges(1 << 30); len(got) != 1 || got[0] != (Range{0, 1 << 30}) {
		t.Errorf("1 GiB: %+v", got)
	}
	got := RAMRanges(5 << 30)
	if len(got) != 2 || got[0] != (Range{0, MMIOHoleStart}) || got[1] != (Range{FourGiB, 2 << 30}) {
		t.Errorf("5 GiB: %+v", got)
	}
}

func TestCmdline(t *testing.T) {
	g := newGuest(t, Range{0, 1 << 20})
	k := &Kernel{CmdlineSize: 10}
	if err := WriteCmdline(g, k, "0123456789"); err != nil {
		t.Fatal(err)
	}
	if err := WriteCmdline(g, k, "0123456789a"); err == nil || !strings.Contains(err.Error(), "at most 10") {
		t.Fatalf("too long: %v", err)
	}
	if err := WriteCmdline(g, k, "a\x00b"); err == nil {
		t.Fatal("NUL accepted")
	}
}

// makeELF builds an x86-64 ELF executable with the given PT_LOAD segments
// (paddr, vaddr, data, memsz).
func makeELF(entry uint64, segs ...struct {
	paddr, vaddr uint64
	data         []byte
	memsz        uint64
}) []byte {
	phoff := uint64(elfHeaderSize)
	dataOff := phoff + uint64(len(segs))*elfPhdrSize
	b := make([]byte, dataOff)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = elfClass64, elfDataLSB, 1
	le.PutUint16(b[16:], elfTypeExec)
	le.PutUint16(b[18:], elfMachineX86)
	le.PutUint64(b[24:], entry)
	le.PutUint64(b[32:], phoff)
	le.PutUint16(b[52:], elfHeaderSize)
	le.PutUint16(b[54:], elfPhdrSize)
	le.PutUint16(b[56:], uint16(len(segs)))
	for i, s := range segs {
		ph := b[phoff+uint64(i)*elfPhdrSize:]
		le.PutUint32(ph, ptLoad)
		le.PutUint64(ph[8:], uint64(len(b)))
		le.PutUint64(ph[16:], s.vaddr)
		le.PutUint64(ph[24:], s.paddr)
		le.PutUint64(ph[32:], uint64(len(s.data)))
		le.PutUint64(ph[40:], s.memsz)
		b = append(b, s.data...)
	}
	return b
}

type seg = struct {
	paddr, vaddr uint64
	data         []byte
	memsz        uint64
}

func TestLoadELF(t *testing.T) {
	g := newGuest(t, RAMRanges(64<<20)...)
	// Dirty the bss area to check it is cleared.
	_ = g.WriteAt([]byte{1, 2, 3}, 0x1000000+0x2000)
	img := makeELF(0xffffffff81000000,
		seg{0x1000000, 0xffffffff81000000, []byte("text"), 0x3000},
		seg{0x1400000, 0xffffffff81400000, []byte("data"), 0x1000})
	l, err := Load(g, Options{Kernel: img, Cmdline: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Format != FormatELF || l.Entry != 0x1000000 || l.Kernel != (Range{0x1000000, 0x401000}) {
		t.Fatalf("loaded %+v", l)
	}
	b := make([]byte, 4)
	_ = g.ReadAt(b, 0x1400000)
	if string(b) != "data" {
		t.Fatalf("segment 2 = %q", b)
	}
	_ = g.ReadAt(b, 0x1002000)
	if string(b) != "\x00\x00\x00\x00" {
		t.Fatalf("bss not cleared: %v", b)
	}
	zp, _ := g.Slice(ZeroPageAddr, ZeroPageSize)
	if le.Uint16(zp[0x1fe:]) != 0xaa55 || le.Uint32(zp[0x202:]) != headerMagic || zp[0x210] != 0xff ||
		le.Uint32(zp[0x228:]) != CmdlineAddr || le.Uint32(zp[0x230:]) != 0x1000000 {
		t.Fatal("synthesized setup header is wrong")
	}
}

func TestParseELFErrors(t *testing.T) {
	good := makeELF(0x1000000, seg{0x1000000, 0x1000000, []byte("abc"), 0x10})
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:10], "shorter than an ELF64 header"},
		{"32-bit", func() []byte { b := append([]byte(nil), good...); b[4] = 1; return b }(), "64-bit"},
		{"not exec", func() []byte { b := append([]byte(nil), good...); le.PutUint16(b[16:], 3); return b }(), "not an executable"},
		{"arm", func() []byte { b := append([]byte(nil), good...); le.PutUint16(b[18:], 183); return b }(), "not x86-64"},
		{"phdrs past end", func() []byte { b := append([]byte(nil), good...); le.PutUint64(b[32:], 1<<40); return b }(), "run past"},
		{"segment past end", good[:len(good)-1], "run past the end"},
		{"filesz > memsz", makeELF(0x1000000, seg{0x1000000, 0x1000000, []byte("abcd"), 2}), "exceeds memory size"},
		{"entry outside", makeELF(0x5000000, seg{0x1000000, 0x1000000, []byte("abc"), 0x10}), "outside every loadable segment"},
		{"overlap", makeELF(0x1000000, seg{0x1000000, 0, []byte("a"), 0x10}, seg{0x1000008, 0, []byte("b"), 0x10}), "overlaps"},
		{"wrap", makeELF(0x1000000, seg{^uint64(0) - 4, 0, nil, 0x10}), "wraps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseELF(tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadKernel) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	g := newGuest(t, Range{0, 8 << 20})
	low := makeELF(0x1000, seg{0x1000, 0x1000, []byte("a"), 0x10})
	if _, err := LoadKernel(g, low); err == nil || !strings.Contains(err.Error(), "below 1 MiB") {
		t.Fatalf("low segment: %v", err)
	}
	if _, err := LoadKernel(g, good); err == nil || !strings.Contains(err.Error(), "guest RAM too small") {
		t.Fatalf("segment beyond RAM: %v", err)
	}
}

func TestMPTable(t *testing.T) {
	seq := func(n int) []uint32 {
		ids := make([]uint32, n)
		for i := range ids {
			ids[i] = uint32(i)
		}
		return ids
	}
	for _, n := range []int{1, 2, 4, 64, MaxMPCPUs} {
		b, err := MPTable(MPTableAddr, seq(n))
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:4]) != "_MP_" || checksumOK(b[:16]) != true || b[8] != 1 || b[9] != 4 {
			t.Fatalf("%d vCPUs: bad floating pointer % x", n, b[:16])
		}
		if ptr := le.Uint32(b[4:]); ptr != MPTableAddr+16 {
			t.Fatalf("table pointer %#x", ptr)
		}
		tab := b[16:]
		if string(tab[:4]) != "PCMP" || int(le.Uint16(tab[4:])) != len(tab) || !checksumOK(tab) {
			t.Fatalf("%d vCPUs: bad config table header", n)
		}
		if le.Uint32(tab[36:]) != LAPICAddr {
			t.Fatal("LAPIC address")
		}
		count := map[byte]int{}
		var bsp, ioapicID int = -1, -1
		var pins []byte
		var lints []byte
		for off, i := mpcHeaderSize, 0; i < int(le.Uint16(tab[34:])); i++ {
			typ := tab[off]
			count[typ]++
			switch typ {
			case mpProcessor:
				if int(tab[off+1]) != count[typ]-1 || tab[off+3]&cpuEnabled == 0 {
					t.Fatalf("processor entry %d: % x", i, tab[off:off+20])
				}
				if tab[off+3]&cpuBootstrap != 0 {
					bsp = int(tab[off+1])
				}
				off += mpProcSize
				continue
			case mpIOAPIC:
				ioapicID = int(tab[off+1])
				if le.Uint32(tab[off+4:]) != IOAPICAddr {
					t.Fatal("IOAPIC address")
				}
			case mpIOInterrupt:
				if tab[off+5] != tab[off+7] || int(tab[off+6]) != n {
					t.Fatalf("interrupt entry % x", tab[off:off+8])
				}
				pins = append(pins, tab[off+7])
			case mpLocalInt:
				lints = append(lints, tab[off+1], tab[off+7])
			}
			off += mpEntrySize
		}
		if count[mpProcessor] != n || count[mpBus] != 1 || count[mpIOAPIC] != 1 || count[mpIOInterrupt] != 24 || count[mpLocalInt] != 2 {
			t.Fatalf("%d vCPUs: entry counts %v", n, count)
		}
		if bsp != 0 || ioapicID != n || len(pins) != 24 || pins[23] != 23 {
			t.Fatalf("bsp %d ioapic %d pins %v", bsp, ioapicID, pins)
		}
		if string(lints) != string([]byte{mpIntExtINT, 0, mpIntNMI, 1}) {
			t.Fatalf("local interrupts % x", lints)
		}
	}
	for name, ids := range map[string][]uint32{
		"no vCPUs": nil, "255 vCPUs": seq(255), "duplicate id": {0, 1, 1}, "id 254": {0, 254},
	} {
		if _, err := MPTable(MPTableAddr, ids); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// Sparse ids from a 3-core topology: the I/O APIC follows the highest.
	ids := APICIDs(hypervisor.Topology{Sockets: 2, Cores: 3, Threads: 1}, 6)
	if want := []uint32{0, 1, 2, 4, 5, 6}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("APICIDs = %v, want %v", ids, want)
	}
	b, err := MPTable(MPTableAddr, ids)
	if err != nil {
		t.Fatal(err)
	}
	tab := b[16:]
	for i, id := range ids {
		if e := tab[mpcHeaderSize+i*mpProcSize:]; e[0] != mpProcessor || uint32(e[1]) != id {
			t.Fatalf("processor entry %d: id %d, want %d", i, e[1], id)
		}
	}
	if io := tab[mpcHeaderSize+len(ids)*mpProcSize+mpEntrySize:]; io[0] != mpIOAPIC || io[1] != 7 {
		t.Fatalf("I/O APIC entry % x", io[:8])
	}
}

func checksumOK(b []byte) bool {
	var s byte
	for _, v := range b {
		s += v
	}
	return s == 0
}

func hostCPUID() []CPUIDEntry {
	return []CPUIDEntry{
		{Function: 0, EAX: 0x1f, EBX: 0x756e6547},
		{Function: 1, EAX: 0x906ea, EBX: 0x07100800, ECX: 0xfffa3203 | cpuid1ECXCX16 | cpuid1ECXPOPCNT | cpuid1ECXX2APIC | cpuid1ECXTSCDeadline, EDX: 0x178bfbff},
		{Function: 4, Index: 0, Flags: 1, EAX: 0x1c004121}, // L1d
		{Function: 4, Index: 3, Flags: 1, EAX: 0x1c03c163}, // L3
		{Function: 4, Index: 4, Flags: 1, EAX: 0},
		{Function: 0xb, Index: 0, Flags: 1, EAX: 1, EBX: 2, ECX: 0x100, EDX: 7},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b},
		{Function: 0x40000001, EAX: 0x1000},
		{Function: 0x80000000, EAX: 0x80000008},
	}
}

func find(es []CPUIDEntry, fn, idx uint32) *CPUIDEntry {
	for i := range es {
		if es[i].Function == fn && es[i].Index == idx {
			return &es[i]
		}
	}
	return nil
}

func TestFilterCPUIDTopology(t *testing.T) {
	tests := []struct {
		name       string
		topo       hypervisor.Topology
		nvcpus     int
		vcpu       int
		apicID     uint32
		logical    uint32
		smtShift   uint32
		coreShift  uint32
		coresField uint32 // leaf 4 EAX[31:26]
		l3Sharing  uint32 // leaf 4 EAX[25:14] for L3
	}{
		{"1 vCPU", hypervisor.Topology{}, 1, 0, 0, 1, 0, 0, 0, 0},
		{"4 vCPUs default", hypervisor.Topology{}, 4, 3, 3, 4, 0, 2, 3, 3},
		{"2 sockets x 3 cores x 2 threads", hypervisor.Topology{Sockets: 2, Cores: 3, Threads: 2}, 12, 7, 0b1_00_1, 6, 1, 3, 2, 5},
		{"1 socket x 2 cores x 2 threads, vCPU 2", hypervisor.Topology{Sockets: 1, Cores: 2, Threads: 2}, 4, 2, 2, 4, 1, 2, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := hostCPUID()
			orig := append([]CPUIDEntry(nil), host...)
			out := FilterCPUID(host, tt.vcpu, tt.topo, tt.nvcpus, CPUIDOptions{})
			for i := range host {
				if host[i] != orig[i] {
					t.Fatal("input modified")
				}
			}
			l1 := find(out, 1, 0)
			if l1.EBX>>24 != tt.apicID || (l1.EBX>>16)&0xff != tt.logical || l1.EBX&0xffff != 0x0800 {
				t.Errorf("leaf 1 EBX %#x: apic id %d, logical %d", l1.EBX, l1.EBX>>24, (l1.EBX>>16)&0xff)
			}
			if (l1.EDX&cpuid1EDXHTT != 0) != (tt.logical > 1) {
				t.Errorf("HTT bit wrong for %d logical", tt.logical)
			}
			if l1.ECX&cpuid1ECXHypervisor == 0 {
				t.Error("hypervisor bit not set")
			}
			smt, core, end := find(out, 0xb, 0), find(out, 0xb, 1), find(out, 0xb, 2)
			if smt == nil || core == nil || end == nil {
				t.Fatalf("leaf 0xb incomplete: %+v", out)
			}
			if smt.EAX != tt.smtShift || smt.ECX != 0x100 || smt.EDX != tt.apicID ||
				core.EAX != tt.coreShift || core.EBX != tt.logical || core.ECX != 0x201 || core.EDX != tt.apicID ||
				end.EAX != 0 || end.EBX != 0 || end.ECX != 2 {
				t.Errorf("leaf 0xb: %+v %+v %+v", *smt, *core, *end)
			}
			if l4 := find(out, 4, 0); l4.EAX>>26 != tt.coresField {
				t.Errorf("leaf 4 cores field %d, want %d", l4.EAX>>26, tt.coresField)
			}
			if l3 := find(out, 4, 3); (l3.EAX>>14)&0xfff != tt.l3Sharing || l3.EAX&0x3fff != 0x0163 {
				t.Errorf("L3 sharing %d, want %d (EAX %#x)", (l3.EAX>>14)&0xfff, tt.l3Sharing, l3.EAX)
			}
			if find(out, 0x1f, 2) == nil || find(out, 0x1f, 2).ECX>>8 != levelTypeDie {
				t.Error("leaf 0x1f has no die level")
			}
		})
	}
}

func TestFilterCPUIDOptions(t *testing.T) {
	out := FilterCPUID(hostCPUID(), 0, hypervisor.Topology{}, 1, CPUIDOptions{PVM: true, HideHypervisor: true})
	l1 := find(out, 1, 0)
	for name, bit := range map[string]uint32{"CX16": cpuid1ECXCX16, "POPCNT": cpuid1ECXPOPCNT, "x2APIC": cpuid1ECXX2APIC,
		"TSC-deadline": cpuid1ECXTSCDeadline, "hypervisor": cpuid1ECXHypervisor} {
		if l1.ECX&bit != 0 {
			t.Errorf("%s still visible", name)
		}
	}
	if find(out, 0x40000000, 0) != nil || find(out, 0x40000001, 0) != nil {
		t.Error("KVM leaves not hidden")
	}
	out = FilterCPUID(hostCPUID(), 0, hypervisor.Topology{}, 1, CPUIDOptions{HideX2APIC: true})
	l1 = find(out, 1, 0)
	if l1.ECX&cpuid1ECXX2APIC != 0 || l1.ECX&cpuid1ECXPOPCNT == 0 || l1.ECX&cpuid1ECXTSCDeadline == 0 {
		t.Errorf("HideX2APIC alone: ECX %#x", l1.ECX)
	}
	if find(out, 0x40000000, 0) == nil {
		t.Error("KVM signature leaf dropped without HideHypervisor")
	}
}

func TestAPICIDsUnique(t *testing.T) {
	for _, topo := range []hypervisor.Topology{{}, {Sockets: 2, Dies: 2, Cores: 3, Threads: 2}, {Sockets: 3, Cores: 5, Threads: 1}} {
		n := 24
		norm := NormalizeTopology(topo, n)
		seen := map[uint32]bool{}
		for v := 0; v < n; v++ {
			id := APICID(v, norm)
			if seen[id] {
				t.Fatalf("topology %+v: APIC id %d repeated", topo, id)
			}
			seen[id] = true
		}
	}
}

// guestKitDir is where guest/build.sh puts its outputs for root.
func guestKitFile(t *testing.T, name string) []byte {
	dir := os.Getenv("VSH_GUEST_DIR")
	if dir == "" {
		dir = "/var/cache/vsh/guest"
		if os.Geteuid() != 0 {
			home, _ := os.UserCacheDir()
			dir = filepath.Join(home, "vsh", "guest")
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Skipf("guest kit %s not built (run guest/build.sh): %v", name, err)
	}
	return b
}

func TestLoadGuestKitKernels(t *testing.T) {
	for _, name := range []string{"vmlinux", "bzImage"} {
		t.Run(name, func(t *testing.T) {
			img := guestKitFile(t, name)
			initrd := guestKitFile(t, "initramfs.cpio.gz")
			g := newGuest(t, RAMRanges(256<<20)...)
			l, err := Load(g, Options{Kernel: img, Initrd: initrd, Cmdline: "console=ttyS0", APICIDs: []uint32{0, 1}})
			if err != nil {
				t.Fatal(err)
			}
			if l.Kernel.Start < HighMemStart || l.Entry < l.Kernel.Start || l.Entry >= l.Kernel.End() {
				t.Fatalf("entry %#x outside kernel %+v", l.Entry, l.Kernel)
			}
			if l.Initrd.Start < l.Kernel.End() || l.Initrd.End() > 256<<20 || l.Initrd.Start%4096 != 0 {
				t.Fatalf("initrd %+v, kernel %+v", l.Initrd, l.Kernel)
			}
			if name == "bzImage" {
				if l.Entry != l.Kernel.Start+0x200 {
					t.Fatalf("bzImage entry %#x", l.Entry)
				}
				zp, _ := g.Slice(ZeroPageAddr, ZeroPageSize)
				if le.Uint16(zp[0x206:]) < 0x020c || le.Uint16(zp[0x236:])&xlfKernel64 == 0 {
					t.Fatal("real bzImage header not copied")
				}
			}
			t.Logf("%s: entry %#x kernel %#x+%#x initrd %#x+%#x", name, l.Entry, l.Kernel.Start, l.Kernel.Size, l.Initrd.Start, l.Initrd.Size)
		})
	}
}

func FuzzParseBzImage(f *testing.F) {
	o := goodBz()
	o.setupSects, o.payload, o.initSize = 2, 0x200, 0x1000
	f.Add(makeBzImage(o))
	o = goodBz()
	o.setupSects = 0
	o.payload = 10
	f.Add(makeBzImage(o))
	// One guest for all inputs: the fuzz function runs serially in each
	// worker, and loading overwrites what it needs.
	g := newGuest(f, Range{0, 2 << 20}, Range{16 << 20, 8 << 20})
	f.Fuzz(func(t *testing.T, data []byte) {
		bz, err := ParseBzImage(data)
		if err != nil {
			if !errors.Is(err, ErrBadKernel) {
				t.Fatalf("error does not wrap ErrBadKernel: %v", err)
			}
			return
		}
		if _, err := LoadKernel(g, data); err != nil && !strings.Contains(err.Error(), "guest RAM too small") && !errors.Is(err, ErrBadKernel) {
			t.Fatalf("unexpected load error: %v", err)
		}
		_ = bz
	})
}

func FuzzLoadELF(f *testing.F) {
	f.Add(makeELF(0x1000000, seg{0x1000000, 0x1000000, []byte("abc"), 0x10}))
	f.Add(makeELF(0xffffffff81000000, seg{0x1000000, 0xffffffff81000000, []byte("text"), 0x3000}, seg{0x1400000, 0, nil, 0x1000}))
	g := newGuest(f, Range{0, 2 << 20}, Range{16 << 20, 1 << 20})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := LoadKernel(g, data)
		if err != nil {
			return
		}
		if k.Entry < k.Extent.Start || k.Entry >= k.Extent.End() {
			t.Fatalf("entry %#x outside %+v", k.Entry, k.Extent)
		}
	})
}
