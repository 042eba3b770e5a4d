package vm

import (
	"sync/atomic"
	"testing"

	"vsh/hypervisor/kvm"
)

// benchMachine builds a 1-vCPU, 2 MiB machine running code in ring 3 whose
// marker port calls onMarker.
func benchMachine(b *testing.B, code []byte, onMarker func()) *Machine {
	m, err := New(Options{MemoryBytes: 2 << 20, VCPUs: 1, PVMFixups: kvm.IsPVM(), Boot: func(m *Machine) error {
		if err := m.Memory().WriteAt(code, 0x100000); err != nil {
			return err
		}
		cr3, err := m.SetupLongMode(true)
		if err != nil {
			return err
		}
		return m.VCPU(0).SetEntry(Entry{RIP: 0x100000, RSP: 0x1ff000, CR3: cr3, User: true})
	}})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Devices().AddPort("marker", portMarker, 4, portFunc(func(off uint64, data []byte, write bool) {
		if write {
			onMarker()
		}
	})); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkVMCreateToFirstInstruction measures vm.New + Start until the
// payload's first port write reaches the VMM.
func BenchmarkVMCreateToFirstInstruction(b *testing.B) {
	requireKVM(b)
	for i := 0; i < b.N; i++ {
		first := make(chan struct{})
		var once atomic.Bool
		m := benchMachine(b, payloadSMP, func() {
			if once.CompareAndSwap(false, true) {
				close(first)
			}
		})
		if err := m.Start(); err != nil {
			b.Fatal(err)
		}
		<-first
		b.StopTimer()
		m.Close()
		b.StartTimer()
	}
}

// BenchmarkPortIOExit measures one guest OUT -> VMM device -> guest round
// trip (ns/op is per exit).
func BenchmarkPortIOExit(b *testing.B) {
	requireKVM(b)
	var n atomic.Int64
	done := make(chan struct{})
	started := make(chan struct{})
	target := int64(b.N) + 1 // the first exit starts the clock
	m := benchMachine(b, payloadPortLoop, func() {
		switch n.Add(1) {
		case 1:
			close(started)
		case target:
			close(done)
		}
	})
	defer m.Close()
	if err := m.Start(); err != nil {
		b.Fatal(err)
	}
	<-started
	b.ResetTimer()
	<-done
}

// BenchmarkStartDestroy measures a whole create, boot to first port write,
// and destroy cycle.
func BenchmarkStartDestroy(b *testing.B) {
	requireKVM(b)
	for i := 0; i < b.N; i++ {
		first := make(chan struct{})
		var once atomic.Bool
		m := benchMachine(b, payloadSMP, func() {
			if once.CompareAndSwap(false, true) {
				close(first)
			}
		})
		if err := m.Start(); err != nil {
			b.Fatal(err)
		}
		<-first
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
