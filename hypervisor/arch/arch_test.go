package arch

import (
	"encoding/binary"
	"testing"

	"vsh/hypervisor/kvm"
	"vsh/hypervisor/memory"
)

func TestGDTEntryMatchesFirecracker(t *testing.T) {
	// Values from kvm-vmm.md §2.5 (Firecracker regs.rs).
	for _, tc := range []struct {
		flags uint16
		want  uint64
	}{
		{0xa09b, 0x00af9b000000ffff},
		{0xc093, 0x00cf93000000ffff},
		{0x808b, 0x008f8b000000ffff},
	} {
		if got := GDTEntry(tc.flags, 0, 0xfffff); got != tc.want {
			t.Errorf("GDTEntry(%#x) = %#016x, want %#016x", tc.flags, got, tc.want)
		}
	}
	if got := GDTEntry(0x0093, 0x12345678, 0xabcde); got != 0x120a93345678bcde {
		t.Errorf("GDTEntry with base/limit = %#016x", got)
	}
}

func TestSegmentFromGDT(t *testing.T) {
	b := GDTBytes()
	code := SegmentFromGDT(binary.LittleEndian.Uint64(b[SelKernelCode:]), SelKernelCode)
	want := kvm.Segment{Limit: 0xffffffff, Selector: 0x10, Type: 11, Present: 1, S: 1, L: 1, G: 1}
	if code != want {
		t.Errorf("kernel code = %+v, want %+v", code, want)
	}
	ucode := SegmentFromGDT(binary.LittleEndian.Uint64(b[SelUserCode&^3:]), SelUserCode)
	if ucode.DPL != 3 || ucode.L != 1 || ucode.Type != 11 || ucode.Selector != 0x33 {
		t.Errorf("user code = %+v", ucode)
	}
	udata := SegmentFromGDT(binary.LittleEndian.Uint64(b[SelUserData&^3:]), SelUserData)
	if udata.DPL != 3 || udata.DB != 1 || udata.Type != 3 || udata.Selector != 0x2b {
		t.Errorf("user data = %+v", udata)
	}
	tss := SegmentFromGDT(binary.LittleEndian.Uint64(b[SelTSS:]), SelTSS)
	if tss.Type != 11 || tss.S != 0 || tss.Present != 1 {
		t.Errorf("tss = %+v", tss)
	}
}

func TestPageTableBytes(t *testing.T) {
	for _, tc := range []struct {
		top   uint64
		user  bool
		pages int
	}{
		{1, false, 3},
		{4 << 30, false, 6},
		{4<<30 + 1, true, 7},
		{512 << 30, false, 514},
	} {
		b, err := PageTableBytes(PML4Addr, tc.top, tc.user)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != tc.pages*0x1000 {
			t.Errorf("top %#x: %d bytes, want %d pages", tc.top, len(b), tc.pages)
		}
		flags := uint64(3)
		if tc.user {
			flags = 7
		}
		if got := binary.LittleEndian.Uint64(b); got != PML4Addr+0x1000|flags {
			t.Errorf("PML4[0] = %#x", got)
		}
		if got := binary.LittleEndian.Uint64(b[0x1000:]); got != PML4Addr+0x2000|flags {
			t.Errorf("PDPT[0] = %#x", got)
		}
		// Each 2 MiB page maps to itself.
		ndirs := (len(b) - 0x2000) / 0x1000
		for d := 0; d < ndirs; d++ {
			for _, i := range []int{0, 1, 511} {
				got := binary.LittleEndian.Uint64(b[0x2000+d*0x1000+8*i:])
				want := uint64(d)<<30 + uint64(i)<<21 | flags | 0x80
				if got != want {
					t.Fatalf("top %#x PD%d[%d] = %#x, want %#x", tc.top, d, i, got, want)
				}
			}
		}
		// PML4 holds one entry only.
		if got := binary.LittleEndian.Uint64(b[8:]); got != 0 {
			t.Errorf("PML4[1] = %#x, want 0", got)
		}
	}
	for _, bad := range []struct{ base, top uint64 }{{0x9001, 1 << 30}, {0x9000, 0}, {0x9000, 513 << 30}} {
		if _, err := PageTableBytes(bad.base, bad.top, false); err == nil {
			t.Errorf("PageTableBytes(%#x, %#x) accepted", bad.base, bad.top)
		}
	}
}

func TestSetupWritesGuestMemory(t *testing.T) {
	mem, err := memory.New(memory.Region{GPA: 0, Host: make([]byte, 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	cr3, err := SetupPageTables(mem, 4<<30, false)
	if err != nil || cr3 != PML4Addr {
		t.Fatalf("SetupPageTables = %#x, %v", cr3, err)
	}
	if err := SetupGDT(mem); err != nil {
		t.Fatal(err)
	}
	v, _ := mem.Uint64(GDTAddr + SelKernelCode)
	if v != 0x00af9b000000ffff {
		t.Errorf("GDT[2] in memory = %#x", v)
	}
	small, _ := memory.New(memory.Region{GPA: 0, Host: make([]byte, 0x1000)})
	if _, err := SetupPageTables(small, 4<<30, false); err == nil {
		t.Error("page tables past the end of memory accepted")
	}
}

func TestLongModeSregs(t *testing.T) {
	var s kvm.Sregs
	LongModeSregs(&s, 0x9000, true)
	if s.CR0&CR0PG == 0 || s.CR0&CR0PE == 0 || s.CR4&CR4PAE == 0 || s.EFER != EFERLME|EFERLMA || s.CR3 != 0x9000 {
		t.Errorf("control registers: cr0 %#x cr4 %#x efer %#x cr3 %#x", s.CR0, s.CR4, s.EFER, s.CR3)
	}
	if s.CS.DPL != 3 || s.SS.DPL != 3 || s.CS.Selector != SelUserCode || s.SS.Selector != SelUserData {
		t.Errorf("ring-3 segments: cs %+v ss %+v", s.CS, s.SS)
	}
	LongModeSregs(&s, 0x9000, false)
	if s.CS.DPL != 0 || s.CS.Selector != SelKernelCode || s.DS.Selector != SelKernelData || s.TR.Selector != SelTSS {
		t.Errorf("ring-0 segments: cs %+v ds %+v", s.CS, s.DS)
	}
	if s.GDT.Base != GDTAddr || s.GDT.Limit != 8*7-1 {
		t.Errorf("gdt %+v", s.GDT)
	}
}

func TestSetLINT(t *testing.T) {
	var l kvm.LAPICState
	binary.LittleEndian.PutUint32(l.Regs[APICLVT0:], 0x10700) // masked, some mode
	binary.LittleEndian.PutUint32(l.Regs[APICLVT1:], 0x10000)
	SetLINT(&l)
	if got := binary.LittleEndian.Uint32(l.Regs[APICLVT0:]); got != 0x10700 {
		t.Errorf("LVT0 = %#x, want ExtINT with mask bit kept", got)
	}
	if got := binary.LittleEndian.Uint32(l.Regs[APICLVT1:]); got != 0x10400 {
		t.Errorf("LVT1 = %#x, want NMI", got)
	}
}

func TestBootMSRsAndFPU(t *testing.T) {
	seen := map[uint32]uint64{}
	for _, m := range BootMSRs() {
		seen[m.Index] = m.Data
	}
	if seen[MSRMTRRDefType] != 0x806 || seen[MSRIA32MiscEnable] != 1 {
		t.Errorf("MSRs = %v", seen)
	}
	if f := BootFPU(); f.FCW != 0x37f || f.MXCSR != 0x1f80 {
		t.Errorf("FPU = %+v", f)
	}
}
