package vm

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/kvm"
)

func TestAllocRAMLayout(t *testing.T) {
	for _, tc := range []struct {
		size    uint64
		regions [][2]uint64 // GPA, size
	}{
		{2 << 20, [][2]uint64{{0, 2 << 20}}},
		{3 << 30, [][2]uint64{{0, 3 << 30}}},
		{5 << 30, [][2]uint64{{0, 3 << 30}, {4 << 30, 2 << 30}}},
	} {
		r, err := allocRAM(tc.size, false, true)
		if err != nil {
			t.Fatalf("allocRAM(%#x): %v", tc.size, err)
		}
		if len(r.regions) != len(tc.regions) {
			t.Fatalf("allocRAM(%#x): %d regions, want %d", tc.size, len(r.regions), len(tc.regions))
		}
		for i, want := range tc.regions {
			if got := r.regions[i]; got.GPA != want[0] || uint64(len(got.Host)) != want[1] {
				t.Errorf("allocRAM(%#x) region %d = %#x+%#x, want %#x+%#x", tc.size, i, got.GPA, len(got.Host), want[0], want[1])
			}
		}
		if err := r.free(); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []uint64{0, 4097} {
		if _, err := allocRAM(bad, false, false); err == nil {
			t.Errorf("allocRAM(%d) accepted", bad)
		}
	}
}

func TestHugePagesUnavailableIsClear(t *testing.T) {
	_, err := allocRAM(2<<20, true, false)
	if err == nil {
		t.Skip("huge pages are available on this host")
	}
	if !strings.Contains(err.Error(), "vm.nr_hugepages") {
		t.Errorf("error does not say how to reserve huge pages: %v", err)
	}
	if _, err := allocRAM(3<<20, true, false); err == nil || !strings.Contains(err.Error(), "2 MiB") {
		t.Errorf("odd huge-page size: %v", err)
	}
}

func TestMinimalCPUID(t *testing.T) {
	in := []kvm.CPUIDEntry{
		{Function: 1, EBX: 0xff0000ff | 0x00ff0000, ECX: cpuid1ECXCX16 | cpuid1ECXPOPCNT | 1},
		{Function: 0xb, Index: 0},
	}
	out := minimalCPUID(append([]kvm.CPUIDEntry(nil), in...), 3, 4, true)
	if out[0].EBX>>24 != 3 || out[0].EBX>>16&0xff != 4 || out[0].EBX&0xffff != 0x00ff {
		t.Errorf("leaf 1 EBX = %#x", out[0].EBX)
	}
	if out[0].ECX != cpuid1ECXHypervisor|1 || out[0].EDX&cpuid1EDXHTT == 0 {
		t.Errorf("leaf 1 ECX %#x EDX %#x", out[0].ECX, out[0].EDX)
	}
	if out[1].EDX != 3 {
		t.Errorf("leaf 0xb EDX = %d", out[1].EDX)
	}
	if o := minimalCPUID(append([]kvm.CPUIDEntry(nil), in...), 0, 1, false); o[0].ECX&cpuid1ECXCX16 == 0 {
		t.Error("CX16 hidden without PVM fix-ups")
	}
}

// TestMemoryAboveHole runs a guest with 5 GiB (lazily mapped) that writes
// above 4 GiB; the write must land in the second region.
func TestMemoryAboveHole(t *testing.T) {
	code := []byte{
		0x48, 0xbb, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // movabs rbx,0x100000008
		0xc7, 0x03, 0x5a, 0x5a, 0x00, 0x00, // mov dword [rbx],0x5a5a
		0x66, 0xba, 0x01, 0x05, // mov dx,0x501
		0xee,       // out dx,al
		0xeb, 0xfe, // jmp $
	}
	m, _ := newPayloadVM(t, code, payloadOpts{memory: 5 << 30})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, m); e.Kind != ExitPoweroff {
		t.Fatalf("exit = %v", e)
	}
	v, err := m.Memory().Uint32(FourGiB + 8)
	if err != nil || v != 0x5a5a {
		t.Errorf("memory at 4 GiB+8 = %#x, %v", v, err)
	}
	if _, err := m.Memory().Uint32(PCIHoleStart); err == nil {
		t.Error("the PCI hole is readable as RAM")
	}
}

func TestVCPUPinning(t *testing.T) {
	requireKVM(t)
	var host unix.CPUSet
	if err := unix.SchedGetaffinity(0, &host); err != nil {
		t.Skip(err)
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < 2; i++ {
		if host.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	last := cpus[len(cpus)-1]
	m, err := New(Options{MemoryBytes: 2 << 20, VCPUs: 2, CPUSet: cpus, VCPUPins: map[int][]int{1: {last}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, want := range [][]int{cpus, {last}} {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(m.VCPU(i).ThreadID(), &set); err != nil {
			t.Fatal(err)
		}
		if set.Count() != len(want) {
			t.Errorf("vCPU %d affinity has %d CPUs, want %v", i, set.Count(), want)
		}
		for _, c := range want {
			if !set.IsSet(c) {
				t.Errorf("vCPU %d not allowed on CPU %d", i, c)
			}
		}
	}
	if _, err := New(Options{MemoryBytes: 2 << 20, VCPUs: 1, CPUSet: []int{-1}}); err == nil {
		t.Error("pinning to CPU -1 accepted")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	requireKVM(t)
	before := countFDs(t)
	for _, o := range []Options{
		{MemoryBytes: 2 << 20, VCPUs: 2, CPUSet: []int{100000}},
		{MemoryBytes: 2 << 20, VCPUs: 1, HugePages: true, NoSharePages: true, APICIDs: []uint32{0}},
		{MemoryBytes: 2 << 20, VCPUs: 0},
		{MemoryBytes: 0, VCPUs: 1},
		{MemoryBytes: 2 << 20, VCPUs: 2, APICIDs: []uint32{0}},
		{MemoryBytes: 2 << 20, VCPUs: 1, DevicePath: "/nonexistent/kvm"},
	} {
		if m, err := New(o); err == nil {
			m.Close()
			if !o.HugePages {
				t.Errorf("New(%+v) succeeded", o)
			}
		}
	}
	if after := countFDs(t); after != before {
		t.Errorf("failed New calls leaked fds: %d before, %d after", before, after)
	}
}
