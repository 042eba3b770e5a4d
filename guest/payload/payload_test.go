package payload

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vsh/hypervisor/boot"
	"vsh/hypervisor/memory"
)

func TestELFParsesAsKernel(t *testing.T) {
	img := ELF()
	k, err := boot.ParseELF(img)
	if err != nil {
		t.Fatalf("ParseELF: %v", err)
	}
	if k.Entry != LoadAddr+EntryOffset {
		t.Errorf("entry %#x, want %#x", k.Entry, LoadAddr+EntryOffset)
	}
	if len(k.Segments) != 1 || k.Segments[0].Paddr != LoadAddr || k.Segments[0].Memsz != SegmentSize {
		t.Errorf("segments %+v", k.Segments)
	}
	if !bytes.Contains(img, []byte(ReadyMarker+"\r\n")) || !bytes.Contains(img, []byte(EchoPrefix)) {
		t.Error("marker or echo prefix missing from the image")
	}
	// The interrupt-driven mode's stack grows down from StackTop, the end
	// of the segment, past the file's bytes: keep room for a few frames.
	if len(img) > SegmentSize-256 {
		t.Errorf("payload is %d bytes; it must leave stack room in its %d-byte segment", len(img), SegmentSize)
	}
}

// TestLoadsThroughBootProtocol loads the payload as the engine does (ELF
// path of boot.Load) and checks the entry, the code in guest memory and the
// command line the code will read through RSI.
func TestLoadsThroughBootProtocol(t *testing.T) {
	g, err := memory.New(memory.Region{GPA: 0, Host: make([]byte, 16<<20)})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := boot.Load(g, boot.Options{Kernel: ELF(), Cmdline: "e console=ttyS0"})
	if err != nil {
		t.Fatalf("boot.Load: %v", err)
	}
	if loaded.Entry != LoadAddr+EntryOffset {
		t.Errorf("entry %#x", loaded.Entry)
	}
	code, _, err := assemble(program)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(code))
	if err := g.ReadAt(got, loaded.Entry); err != nil || !bytes.Equal(got, code) {
		t.Errorf("code in guest memory differs (%v)", err)
	}
	// The payload's first instruction reads cmd_line_ptr from [rsi+0x228].
	var ptr [4]byte
	if err := g.ReadAt(ptr[:], loaded.ZeroPage+zpCmdLinePtr); err != nil {
		t.Fatal(err)
	}
	addr := uint64(ptr[0]) | uint64(ptr[1])<<8 | uint64(ptr[2])<<16 | uint64(ptr[3])<<24
	first := make([]byte, 1)
	if err := g.ReadAt(first, addr); err != nil || first[0] != ModeEcho {
		t.Errorf("cmdline[0] at %#x = %q (%v), want 'e'", addr, first, err)
	}
}

// TestEncodingMatchesSource assembles the documented source with GNU as
// and compares the result with the hand-encoded bytes.
func TestEncodingMatchesSource(t *testing.T) {
	as, err := exec.LookPath("as")
	if err != nil {
		t.Skip("GNU as not installed: apt-get install binutils")
	}
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("objcopy not installed: apt-get install binutils")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "p.s")
	if err := os.WriteFile(src, []byte(Source()), 0o644); err != nil {
		t.Fatal(err)
	}
	obj, bin := filepath.Join(dir, "p.o"), filepath.Join(dir, "p.bin")
	if out, err := exec.Command(as, "--64", "-o", obj, src).CombinedOutput(); err != nil {
		t.Fatalf("as: %v\n%s\n%s", err, out, Source())
	}
	if out, err := exec.Command(objcopy, "-O", "binary", "-j", ".text", obj, bin).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := assemble(program)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("byte %#x: hand-encoded %#x, as %#x (lengths %d, %d)\n%s", i, got[i], want[i], len(got), len(want), Source())
			}
		}
		t.Fatalf("lengths differ: hand-encoded %d, as %d", len(got), len(want))
	}
}

// TestDecodeSanity walks the program: every jump lands on an instruction
// boundary inside the code, and the port constants the modes rely on are
// where the source says.
func TestDecodeSanity(t *testing.T) {
	code, labels, err := assemble(program)
	if err != nil {
		t.Fatal(err)
	}
	boundaries := map[int]bool{}
	off := 0
	for _, in := range program {
		boundaries[off] = true
		off += len(in.code)
	}
	off = 0
	for _, in := range program {
		if in.rel != "" {
			next := off + len(in.code)
			field := next - in.relTail - in.relSize
			var disp int
			if in.relSize == 1 {
				disp = int(int8(code[field]))
			} else {
				disp = int(int32(uint32(code[field]) | uint32(code[field+1])<<8 | uint32(code[field+2])<<16 | uint32(code[field+3])<<24))
			}
			target := next + disp
			if target != labels[in.rel] || !boundaries[target] {
				t.Errorf("%q at %#x targets %#x, label %s is at %#x", in.asm, off, target, in.rel, labels[in.rel])
			}
		}
		off += len(in.code)
	}
	for _, want := range []struct {
		asm  string
		code []byte
	}{
		{"mov dx, 0x3f8", []byte{0x66, 0xba, 0xf8, 0x03}},
		{"mov dx, 0x608", []byte{0x66, 0xba, 0x08, 0x06}},
		{"mov al, 0x34", []byte{0xb0, 0x34}},
		{"out 0x64, al", []byte{0xe6, 0x64}},
		{"mov dx, 0x3fd", []byte{0x66, 0xba, 0xfd, 0x03}},
	} {
		found := false
		for _, in := range program {
			if in.asm == want.asm {
				found = true
				if !bytes.Equal(in.code, want.code) {
					t.Errorf("%s encoded as % x", want.asm, in.code)
				}
			}
		}
		if !found {
			t.Errorf("program lacks %q", want.asm)
		}
	}
	// The IDT: vectors 0x20-0x2f are 64-bit interrupt gates to
	// irq_handler through the boot code selector; lidt's operand covers it.
	idtr, idt := code[labels["idtr"]:], code[labels["idt"]:]
	idtBase := uint64(LoadAddr + EntryOffset + labels["idt"])
	if lim := binary.LittleEndian.Uint16(idtr); lim != idtEntries*16-1 {
		t.Errorf("IDT limit %#x", lim)
	}
	if base := binary.LittleEndian.Uint64(idtr[2:]); base != idtBase {
		t.Errorf("IDT base %#x, want %#x", base, idtBase)
	}
	handler := uint64(LoadAddr + EntryOffset + labels["irq_handler"])
	for v := 0; v < idtEntries; v++ {
		g := idt[v*16 : v*16+16]
		off := uint64(binary.LittleEndian.Uint16(g)) | uint64(binary.LittleEndian.Uint16(g[6:]))<<16 | uint64(binary.LittleEndian.Uint32(g[8:]))<<32
		present := g[5] == 0x8e && binary.LittleEndian.Uint16(g[2:]) == bootCS && off == handler
		if present != (v >= picVectorBase) {
			t.Errorf("IDT vector %#x: % x", v, g)
		}
	}
	if !strings.Contains(Source(), "rep outsb") {
		t.Error("source lacks the marker output")
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "payload.elf")
	if err := WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, ELF()) {
		t.Errorf("written file differs (%v)", err)
	}
	if err := WriteFile(filepath.Join(path, "sub")); err == nil {
		t.Error("WriteFile into a file's path succeeded")
	}
}
