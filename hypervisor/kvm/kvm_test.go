package kvm

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestOpenMissingDevice(t *testing.T) {
	_, err := Open("/nonexistent/kvm")
	if err == nil || !strings.Contains(err.Error(), "does not exist: load kvm_intel or kvm_amd") {
		t.Errorf("Open of a missing device: %v", err)
	}
}

func TestOpenNotKVM(t *testing.T) {
	_, err := Open("/dev/null")
	if err == nil || !strings.Contains(err.Error(), "KVM_GET_API_VERSION") {
		t.Errorf("Open(/dev/null): %v", err)
	}
}

func TestRequireNamesMissingCapability(t *testing.T) {
	s, err := Open("")
	if err != nil {
		t.Skipf("KVM unusable: %v", err)
	}
	defer s.Close()
	if err := s.Require(RequiredCaps...); err != nil {
		t.Fatalf("required capabilities: %v", err)
	}
	err = s.Require(CapIRQChip, 100000)
	if err == nil || !strings.Contains(err.Error(), "KVM capability 100000 missing") {
		t.Errorf("Require of an unknown capability: %v", err)
	}
	n, err := s.VCPUMmapSize()
	if err != nil || n < 4096 {
		t.Errorf("VCPUMmapSize = %d, %v", n, err)
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil || len(cpuid) == 0 {
		t.Fatalf("SupportedCPUID: %d entries, %v", len(cpuid), err)
	}
	if cpuid[0].Function != 0 {
		t.Errorf("first CPUID leaf %#x, want 0", cpuid[0].Function)
	}
}

func newRun() *Run { return &Run{mem: make([]byte, 4096)} }

func TestRunDecodeIO(t *testing.T) {
	r := newRun()
	binary.LittleEndian.PutUint32(r.mem[runExitReason:], ExitIO)
	u := r.mem[runExitUnion:]
	u[0], u[1] = ExitIOOut, 1
	binary.LittleEndian.PutUint16(u[2:], 0x3f8)
	binary.LittleEndian.PutUint32(u[4:], 3)
	binary.LittleEndian.PutUint64(u[8:], 0x1000-3)
	copy(r.mem[0x1000-3:], "abc")
	io, err := r.IO()
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitReason() != ExitIO || io.Port != 0x3f8 || io.Count != 3 || string(io.Data) != "abc" || io.Direction != ExitIOOut {
		t.Errorf("IO = %+v", io)
	}
	binary.LittleEndian.PutUint64(u[8:], 0x1000-2)
	if _, err := r.IO(); err == nil {
		t.Error("I/O data running off the run page accepted")
	}
}

func TestRunDecodeMMIOAndErrors(t *testing.T) {
	r := newRun()
	u := r.mem[runExitUnion:]
	binary.LittleEndian.PutUint64(u[0:], 0xd0000050)
	copy(u[8:], []byte{1, 2, 3, 4})
	binary.LittleEndian.PutUint32(u[16:], 4)
	u[20] = 1
	mm, err := r.MMIO()
	if err != nil || mm.PhysAddr != 0xd0000050 || !mm.IsWrite || len(mm.Data) != 4 || mm.Data[3] != 4 {
		t.Errorf("MMIO = %+v, %v", mm, err)
	}
	binary.LittleEndian.PutUint32(u[16:], 9)
	if _, err := r.MMIO(); err == nil {
		t.Error("9-byte MMIO accepted")
	}

	// Emulation failure with instruction bytes.
	for i := range u[:RunExitUnionSize] {
		u[i] = 0
	}
	binary.LittleEndian.PutUint32(u[0:], InternalErrorEmulation)
	binary.LittleEndian.PutUint32(u[4:], 2)
	binary.LittleEndian.PutUint64(u[8:], EmulationFlagInstructionBytes)
	u[16] = 2
	u[17], u[18] = 0x0f, 0x0b
	ie := r.InternalError()
	if ie.Suberror != InternalErrorEmulation || len(ie.Insn) != 2 || ie.Insn[0] != 0x0f {
		t.Errorf("InternalError = %+v", ie)
	}
	u[16] = 200 // corrupt size is clamped
	if ie := r.InternalError(); len(ie.Insn) != 15 {
		t.Errorf("clamped insn length %d", len(ie.Insn))
	}

	binary.LittleEndian.PutUint32(u[0:], SystemEventReset)
	binary.LittleEndian.PutUint32(u[4:], 1)
	binary.LittleEndian.PutUint64(u[8:], 42)
	if ev := r.SystemEvent(); ev.Type != SystemEventReset || len(ev.Data) != 1 || ev.Data[0] != 42 {
		t.Errorf("SystemEvent = %+v", ev)
	}
	binary.LittleEndian.PutUint64(u[0:], 0x21)
	binary.LittleEndian.PutUint32(u[8:], 1)
	if fe := r.FailEntry(); fe.HardwareEntryFailureReason != 0x21 || fe.CPU != 1 {
		t.Errorf("FailEntry = %+v", fe)
	}
	if ExitName(ExitShutdown) != "KVM_EXIT_SHUTDOWN" || ExitName(999) != "KVM exit 999" {
		t.Error("ExitName")
	}
}

func TestImmediateExitByte(t *testing.T) {
	r := newRun()
	r.SetImmediateExit(true)
	if r.mem[runImmediateExit] != 1 || r.mem[0] != 0 {
		t.Errorf("immediate_exit bytes % x", r.mem[:4])
	}
	r.SetImmediateExit(false)
	if r.mem[runImmediateExit] != 0 {
		t.Error("immediate_exit not cleared")
	}
}

// FuzzRunDecode feeds arbitrary run pages to the decoders, which read
// kernel-written data and must never index outside the page.
func FuzzRunDecode(f *testing.F) {
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &Run{mem: make([]byte, 4096)}
		copy(r.mem, data)
		if io, err := r.IO(); err == nil && len(io.Data) != int(io.Size)*int(io.Count) {
			t.Fatalf("IO data length %d for %d x %d", len(io.Data), io.Size, io.Count)
		}
		if mm, err := r.MMIO(); err == nil && len(mm.Data) > 8 {
			t.Fatal("MMIO data over 8 bytes")
		}
		r.InternalError()
		r.SystemEvent()
		r.FailEntry()
	})
}
