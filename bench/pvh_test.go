package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"vsh/guest/payload"
)

// TestPVHPayloadELF checks the image is what QEMU's PVH loader wants: an
// x86-64 ELF with one load segment at 1 MiB and a Xen PHYS32_ENTRY note
// pointing at the code.
func TestPVHPayloadELF(t *testing.T) {
	img := pvhPayload()
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("header: class %v machine %v type %v", f.Class, f.Machine, f.Type)
	}
	var load, note *elf.Prog
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			load = p
		case elf.PT_NOTE:
			note = p
		}
	}
	if load == nil || load.Paddr != pvhLoadAddr || load.Filesz != uint64(len(img)) {
		t.Fatalf("load segment %+v", load)
	}
	if note == nil {
		t.Fatal("no PT_NOTE")
	}
	n := img[note.Off : note.Off+note.Filesz]
	le := binary.LittleEndian
	if le.Uint32(n[0:]) != 4 || le.Uint32(n[8:]) != xenNotePVH || string(n[12:16]) != "Xen\x00" {
		t.Errorf("note header % x", n[:16])
	}
	entry := le.Uint64(n[16:])
	if entry != pvhLoadAddr+pvhCodeOffset {
		t.Errorf("PVH entry %#x", entry)
	}
	if !bytes.Contains(img, []byte(payload.ReadyMarker+"\r\n")) {
		t.Error("marker missing")
	}
	// The marker address in `mov esi, imm32` must point at the marker.
	code := img[pvhCodeOffset:]
	addr := le.Uint32(code[5:])
	if off := int(addr) - pvhLoadAddr; off < 0 || off >= len(img) || !bytes.HasPrefix(img[off:], []byte(payload.ReadyMarker)) {
		t.Errorf("mov esi points at %#x, not the marker", addr)
	}
}

// TestPVHPayloadBootsInQEMU boots the image under QEMU's TCG (no KVM
// needed) and waits for the marker.
func TestPVHPayloadBootsInQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed: apt-get install qemu-system-x86")
	}
	kernel := filepath.Join(t.TempDir(), "pvh.elf")
	if err := os.WriteFile(kernel, pvhPayload(), 0o644); err != nil {
		t.Fatal(err)
	}
	args := qemuArgs("microvm", kernel, "", "", 64)
	if args[0] != "-enable-kvm" || args[1] != "-cpu" {
		t.Fatalf("qemuArgs starts with %q", args[:3])
	}
	args = append([]string{"-accel", "tcg", "-cpu", "max"}, args[3:]...) // TCG instead of -enable-kvm -cpu host
	q, _, err := qemuBoot(qemu, args, payload.ReadyMarker, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	q.stop()
}
