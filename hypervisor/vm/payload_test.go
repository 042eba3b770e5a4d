package vm

import (
	"bytes"
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"

	"vsh/hypervisor/kvm"
)

// Test payloads: x86-64 machine code assembled with GNU as (the source is
// in the comments), loaded at payloadBase. They run in ring 3 with IOPL 3
// unless a test says otherwise, because on a PVM host guest ring-0 code is
// about 1000x slower.
const (
	payloadBase = 0x100000
	dataAddr    = 0x180000
	stackTop    = 0x200000

	portSerial = 0x3f8
	portExit   = 0x501 // any write powers the machine off
	portMarker = 0x502 // 32-bit writes are recorded
)

var (
	// lea rsi,[rip+msg]; mov ecx,11; mov dx,0x3f8; rep outsb;
	// mov dx,0x501; out dx,al; jmp $; msg: "hello, vsh\n"
	payloadSerial = append([]byte{
		0x48, 0x8d, 0x35, 0x12, 0x00, 0x00, 0x00,
		0xb9, 0x0b, 0x00, 0x00, 0x00,
		0x66, 0xba, 0xf8, 0x03,
		0xf3, 0x6e,
		0x66, 0xba, 0x01, 0x05,
		0xee,
		0xeb, 0xfe,
	}, "hello, vsh\n"...)

	// mov rbx,0xd0000000; mov rax,[rbx]; add rax,1; mov [rbx+8],rax;
	// mov eax,[rbx+0x10]; mov dx,0x502; out dx,eax; mov dx,0x501; out dx,al; jmp $
	payloadMMIO = []byte{
		0x48, 0xbb, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00,
		0x48, 0x8b, 0x03,
		0x48, 0x83, 0xc0, 0x01,
		0x48, 0x89, 0x43, 0x08,
		0x8b, 0x43, 0x10,
		0x66, 0xba, 0x02, 0x05,
		0xef,
		0x66, 0xba, 0x01, 0x05,
		0xee,
		0xeb, 0xfe,
	}

	// (ring 0) mov dx,0x502; mov eax,0x48; out dx,eax; cli; hlt; jmp $
	payloadHalt = []byte{
		0x66, 0xba, 0x02, 0x05,
		0xb8, 0x48, 0x00, 0x00, 0x00,
		0xef,
		0xfa,
		0xf4,
		0xeb, 0xfe,
	}

	// mov dx,0x502; mov eax,edi; out dx,eax; 1: pause; jmp 1b
	payloadSMP = []byte{
		0x66, 0xba, 0x02, 0x05,
		0x89, 0xf8,
		0xef,
		0xf3, 0x90,
		0xeb, 0xfc,
	}

	// mov rbx,0x180000; mov dx,0x502; out dx,eax; 1: inc qword [rbx]; jmp 1b
	payloadLoop = []byte{
		0x48, 0xc7, 0xc3, 0x00, 0x00, 0x18, 0x00,
		0x66, 0xba, 0x02, 0x05,
		0xef,
		0x48, 0xff, 0x03,
		0xeb, 0xfb,
	}

	// mov rbx,0x180000; mov eax,[rbx]; mov dx,0x502; out dx,eax;
	// mov dword [rbx],1; jmp $
	payloadReset = []byte{
		0x48, 0xc7, 0xc3, 0x00, 0x00, 0x18, 0x00,
		0x8b, 0x03,
		0x66, 0xba, 0x02, 0x05,
		0xef,
		0xc7, 0x03, 0x01, 0x00, 0x00, 0x00,
		0xeb, 0xfe,
	}

	// ud2 (with an empty IDT: #UD -> #DF -> triple fault)
	payloadFault = []byte{0x0f, 0x0b}

	// (ring 0) int3; mov dx,0x502; mov eax,0xdead; out dx,eax; jmp $
	// handler (offset 0xd): mov dx,0x502; mov eax,0xb3b3; out dx,eax;
	// mov dx,0x501; out dx,al; jmp $
	payloadInt3 = []byte{
		0xcc,
		0x66, 0xba, 0x02, 0x05,
		0xb8, 0xad, 0xde, 0x00, 0x00,
		0xef,
		0xeb, 0xfe,
		0x66, 0xba, 0x02, 0x05,
		0xb8, 0xb3, 0xb3, 0x00, 0x00,
		0xef,
		0x66, 0xba, 0x01, 0x05,
		0xee,
		0xeb, 0xfe,
	}
	payloadInt3Handler = 0xd

	// 1: mov dx,0x502; out dx,eax; jmp 1b
	payloadPortLoop = []byte{0x66, 0xba, 0x02, 0x05, 0xef, 0xeb, 0xf9}
)

// testDevices are the ports and MMIO window the payloads talk to.
type testDevices struct {
	m *Machine

	mu        sync.Mutex
	serial    bytes.Buffer
	markers   []uint32
	mmioWrite uint64
	markerCh  chan uint32
	// onMarker, when set, runs in the marker port's write path (on the
	// vCPU thread), like a console hook.
	onMarker func(uint32)
}

type portFunc func(off uint64, data []byte, write bool)

func (f portFunc) Read(off uint64, data []byte)  { f(off, data, false) }
func (f portFunc) Write(off uint64, data []byte) { f(off, data, true) }

func (d *testDevices) register(t testing.TB, m *Machine) {
	d.m = m
	d.markerCh = make(chan uint32, 1024)
	dm := m.Devices()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dm.AddPort("serial", portSerial, 8, portFunc(func(off uint64, data []byte, write bool) {
		if write && off == 0 {
			d.mu.Lock()
			d.serial.Write(data)
			d.mu.Unlock()
		}
	})))
	must(dm.AddPort("exit", portExit, 1, portFunc(func(off uint64, data []byte, write bool) {
		if write {
			m.RequestExit(ExitPoweroff, "test exit port")
		}
	})))
	must(dm.AddPort("marker", portMarker, 4, portFunc(func(off uint64, data []byte, write bool) {
		if !write {
			return
		}
		var b [4]byte
		copy(b[:], data)
		v := binary.LittleEndian.Uint32(b[:])
		d.mu.Lock()
		d.markers = append(d.markers, v)
		hook := d.onMarker
		d.mu.Unlock()
		if hook != nil {
			hook(v)
		}
		select {
		case d.markerCh <- v:
		default:
		}
	})))
	_, err := dm.AddVirtioMMIO("test-mmio", portFunc(func(off uint64, data []byte, write bool) {
		switch {
		case write && off == 8 && len(data) == 8:
			d.mu.Lock()
			d.mmioWrite = binary.LittleEndian.Uint64(data)
			d.mu.Unlock()
		case !write && off == 0 && len(data) == 8:
			binary.LittleEndian.PutUint64(data, 0x1122334455667788)
		case !write && off == 0x10 && len(data) == 4:
			binary.LittleEndian.PutUint32(data, 0xcafef00d)
		}
	}))
	must(err)
}

// marker waits for the next marker value.
func (d *testDevices) marker(t testing.TB) uint32 {
	t.Helper()
	select {
	case v := <-d.markerCh:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("no marker from the guest within 30 s")
		return 0
	}
}

// requireKVM skips the test when /dev/kvm cannot be used here.
func requireKVM(t testing.TB) {
	t.Helper()
	s, err := kvm.Open("")
	if err != nil {
		t.Skipf("KVM unusable: %v", err)
	}
	s.Close()
}

type payloadOpts struct {
	vcpus  int
	ring0  bool
	memory uint64
	// entry overrides the per-vCPU entry offset into the payload.
	entry func(vcpu int) uint64
	// after runs at the end of Boot (e.g. to install an IDT).
	after func(m *Machine) error
}

// newPayloadVM builds a machine that runs code from payloadBase on every
// vCPU, vCPU i with RDI = i and its own stack.
func newPayloadVM(t testing.TB, code []byte, o payloadOpts) (*Machine, *testDevices) {
	t.Helper()
	requireKVM(t)
	if o.vcpus == 0 {
		o.vcpus = 1
	}
	if o.memory == 0 {
		o.memory = 4 << 20
	}
	d := &testDevices{}
	opts := Options{
		MemoryBytes: o.memory,
		VCPUs:       o.vcpus,
		PVMFixups:   kvm.IsPVM(),
		Boot: func(m *Machine) error {
			if err := m.Memory().WriteAt(code, payloadBase); err != nil {
				return err
			}
			cr3, err := m.SetupLongMode(!o.ring0)
			if err != nil {
				return err
			}
			for i, c := range m.VCPUs() {
				off := uint64(0)
				if o.entry != nil {
					off = o.entry(i)
				}
				e := Entry{RIP: payloadBase + off, RSP: stackTop - uint64(i)*0x1000, RDI: uint64(i), CR3: cr3, User: !o.ring0}
				if err := c.SetEntry(e); err != nil {
					return err
				}
			}
			if o.after != nil {
				return o.after(m)
			}
			return nil
		},
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	d.register(t, m)
	return m, d
}

func waitExit(t testing.TB, m *Machine) Exit {
	t.Helper()
	ch := make(chan Exit, 1)
	go func() { ch <- m.Wait() }()
	select {
	case e := <-ch:
		return e
	case <-time.After(60 * time.Second):
		t.Fatal("machine did not stop within 60 s")
		return Exit{}
	}
}

func TestSerialPortOutput(t *testing.T) {
	m, d := newPayloadVM(t, payloadSerial, payloadOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, m)
	if e.Kind != ExitPoweroff || e.Detail != "test exit port" {
		t.Fatalf("exit = %v, want poweroff from the exit port", e)
	}
	if got := d.serial.String(); got != "hello, vsh\n" {
		t.Errorf("serial output %q, want %q", got, "hello, vsh\n")
	}
	st := m.Stats()
	if st[0].IOExits == 0 || st[0].CPUTime <= 0 {
		t.Errorf("stats %+v: want I/O exits and CPU time", st[0])
	}
}

func TestMMIOExits(t *testing.T) {
	m, d := newPayloadVM(t, payloadMMIO, payloadOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, m); e.Kind != ExitPoweroff {
		t.Fatalf("exit = %v", e)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mmioWrite != 0x1122334455667789 {
		t.Errorf("guest wrote %#x to MMIO, want 0x1122334455667789", d.mmioWrite)
	}
	if len(d.markers) != 1 || d.markers[0] != 0xcafef00d {
		t.Errorf("markers %#x, want [0xcafef00d] (a 4-byte MMIO read)", d.markers)
	}
}

func TestHaltParksVCPUInKernel(t *testing.T) {
	m, d := newPayloadVM(t, payloadHalt, payloadOpts{ring0: true})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if v := d.marker(t); v != 0x48 {
		t.Fatalf("marker %#x", v)
	}
	// The in-kernel LAPIC handles HLT; poll until the vCPU has executed it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
		st, err := m.VCPU(0).MPState()
		if err != nil {
			t.Fatal(err)
		}
		if st == kvm.MPStateHalted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vCPU never halted: MP state %d", st)
		}
		if err := m.Resume(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if e := m.Wait(); e.Kind != ExitStopped {
		t.Errorf("exit after Stop = %v", e)
	}
}

func TestSMPEachVCPURuns(t *testing.T) {
	const n = 4
	m, d := newPayloadVM(t, payloadSMP, payloadOpts{vcpus: n})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for len(seen) < n {
		v := d.marker(t)
		if v >= n || seen[v] {
			t.Fatalf("unexpected marker %d (seen %v)", v, seen)
		}
		seen[v] = true
	}
	m.Stop()
	if e := waitExit(t, m); e.Kind != ExitStopped {
		t.Errorf("exit = %v", e)
	}
	for i, s := range m.Stats() {
		if s.IOExits != 1 {
			t.Errorf("vCPU %d: %d I/O exits, want 1", i, s.IOExits)
		}
	}
	for i, c := range m.VCPUs() {
		if c.APICID() != uint32(i) || c.ThreadID() == 0 {
			t.Errorf("vCPU %d: APIC id %d, thread %d", i, c.APICID(), c.ThreadID())
		}
	}
}

func TestPauseResume(t *testing.T) {
	m, d := newPayloadVM(t, payloadLoop, payloadOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	d.marker(t)
	counter := func() uint64 {
		v, err := m.Memory().Uint64(dataAddr)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if _, err := m.VCPU(0).Regs(); err != ErrRunning {
		t.Errorf("Regs while running: %v, want ErrRunning", err)
	}
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	if m.State() != StatePaused {
		t.Fatalf("state %v after Pause", m.State())
	}
	c1 := counter()
	time.Sleep(50 * time.Millisecond)
	if c2 := counter(); c2 != c1 {
		t.Fatalf("counter moved while paused: %d -> %d", c1, c2)
	}
	r, err := m.VCPU(0).Regs()
	if err != nil {
		t.Fatal(err)
	}
	if r.RIP < payloadBase || r.RIP >= payloadBase+uint64(len(payloadLoop)) {
		t.Errorf("paused RIP %#x outside the payload", r.RIP)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for counter() == c1 {
		if time.Now().After(deadline) {
			t.Fatal("counter did not move after Resume")
		}
		time.Sleep(time.Millisecond)
	}
	// Pause twice and resume twice are harmless.
	for i := 0; i < 2; i++ {
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := m.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	m.Stop()
	if e := waitExit(t, m); e.Kind != ExitStopped {
		t.Errorf("exit = %v", e)
	}
	if err := m.Resume(); err == nil {
		t.Error("Resume of a stopped machine succeeded")
	}
}

func TestResetRestartsWithCleanMemory(t *testing.T) {
	m, d := newPayloadVM(t, payloadReset, payloadOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if v := d.marker(t); v != 0 {
		t.Fatalf("first boot saw %d at the flag, want 0", v)
	}
	if err := m.Reset(); err != nil {
		t.Fatal(err)
	}
	// The payload sets the flag after reporting it; after a reset memory
	// is zero again, so the second boot reports 0 too.
	if v := d.marker(t); v != 0 {
		t.Fatalf("after reset the guest saw %d at the flag, want 0", v)
	}
	m.Stop()
	waitExit(t, m)
	// A stopped machine can be reset into running again.
	if err := m.Reset(); err != nil {
		t.Fatal(err)
	}
	if v := d.marker(t); v != 0 {
		t.Fatalf("third boot saw %d", v)
	}
	if m.State() != StateRunning {
		t.Errorf("state %v after Reset", m.State())
	}
}

func TestTripleFaultIsReboot(t *testing.T) {
	m, _ := newPayloadVM(t, payloadFault, payloadOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, m)
	if e.Kind != ExitReboot || e.VCPU != 0 {
		t.Fatalf("exit = %v, want reboot (triple fault) on vCPU 0", e)
	}
}

// TestInt3DeliversBreakpoint runs int3 in ring 0 with a #BP handler in the
// IDT. On a PVM host the instruction comes back as an emulation failure and
// the fix-up must inject #BP; elsewhere the CPU delivers it itself.
func TestInt3DeliversBreakpoint(t *testing.T) {
	const idt = 0x3000
	m, d := newPayloadVM(t, payloadInt3, payloadOpts{ring0: true, after: func(m *Machine) error {
		handler := uint64(payloadBase + payloadInt3Handler)
		gate := make([]byte, 16)
		binary.LittleEndian.PutUint16(gate[0:], uint16(handler))
		binary.LittleEndian.PutUint16(gate[2:], 0x10) // kernel code selector
		gate[5] = 0x8e                                // present, DPL 0, 64-bit interrupt gate
		binary.LittleEndian.PutUint16(gate[6:], uint16(handler>>16))
		binary.LittleEndian.PutUint32(gate[8:], uint32(handler>>32))
		if err := m.Memory().WriteAt(gate, idt+3*16); err != nil {
			return err
		}
		s, err := m.VCPU(0).Sregs()
		if err != nil {
			return err
		}
		s.IDT.Base, s.IDT.Limit = idt, 16*4-1
		return m.VCPU(0).SetSregs(s)
	}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, m)
	if e.Kind != ExitPoweroff {
		t.Fatalf("exit = %v, want poweroff from the #BP handler", e)
	}
	if v := d.marker(t); v != 0xb3b3 {
		t.Errorf("marker %#x, want 0xb3b3 from the #BP handler", v)
	}
}

func TestLifecycleErrors(t *testing.T) {
	m, _ := newPayloadVM(t, payloadSMP, payloadOpts{})
	if err := m.Pause(); err == nil {
		t.Error("Pause before Start succeeded")
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if e := m.Wait(); e.Kind != ExitStopped {
		t.Errorf("Wait after Close = %v", e)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func TestParallelMachinesLeaveNoFDs(t *testing.T) {
	requireKVM(t)
	before := countFDs(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &testDevices{}
			m, err := New(Options{MemoryBytes: 2 << 20, VCPUs: 2, Boot: func(m *Machine) error {
				if err := m.Memory().WriteAt(payloadSerial, payloadBase-0x80000); err != nil {
					return err
				}
				cr3, err := m.SetupLongMode(true)
				if err != nil {
					return err
				}
				return m.VCPU(0).SetEntry(Entry{RIP: payloadBase - 0x80000, RSP: 0x1ff000, CR3: cr3, User: true})
			}})
			if err != nil {
				errs <- err.Error()
				return
			}
			defer m.Close()
			d.register(t, m)
			if err := m.Start(); err != nil {
				errs <- err.Error()
				return
			}
			if e := m.Wait(); e.Kind != ExitPoweroff {
				errs <- e.String()
			}
			if d.serial.String() != "hello, vsh\n" {
				errs <- "serial: " + d.serial.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if after := countFDs(t); after != before {
		t.Errorf("%d fds open before, %d after", before, after)
	}
}

func TestIRQLinesAndIOEventFD(t *testing.T) {
	m, _ := newPayloadVM(t, payloadSMP, payloadOpts{})
	dm := m.Devices()
	com1, err := dm.ClaimIRQ("com1", 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dm.ClaimIRQ("other", 4); err == nil {
		t.Error("IRQ 4 claimed twice")
	}
	if err := com1.Trigger(); err != nil {
		t.Errorf("Trigger: %v", err)
	}
	if err := com1.SetLevel(false); err != nil {
		t.Errorf("SetLevel: %v", err)
	}
	slots := dm.VirtioSlots()
	if len(slots) != 1 || slots[0].Base != VirtioMMIOBase || slots[0].IRQ != 5 {
		t.Fatalf("slots %+v, want the test device at 0xd0000000 IRQ 5", slots)
	}
	s2, err := dm.AddVirtioMMIO("second", portFunc(func(uint64, []byte, bool) {}))
	if err != nil {
		t.Fatal(err)
	}
	if s2.Base != VirtioMMIOBase+0x1000 || s2.IRQ != 6 {
		t.Errorf("second slot %+v", s2)
	}
	if got := s2.CmdlineArg(); got != "virtio_mmio.device=4K@0xd0001000:6" {
		t.Errorf("cmdline arg %q", got)
	}
	if err := dm.AddMMIO("in-ram", 0x1000, 0x1000, portFunc(func(uint64, []byte, bool) {})); err == nil {
		t.Error("MMIO device over guest RAM accepted")
	}
	if err := dm.AddMMIO("in-virtio", VirtioMMIOBase+0x5000, 0x1000, portFunc(func(uint64, []byte, bool) {})); err == nil {
		t.Error("MMIO device inside the virtio window accepted")
	}
	if _, err := dm.WatchWrite(s2.Base+0x50, 4, 0, func() {}); err != nil {
		t.Fatal(err)
	}
}

func TestIOEventFDFromGuest(t *testing.T) {
	// The guest rings a doorbell with a 4-byte write of 2; the ioeventfd
	// must catch it without an MMIO exit.
	code := []byte{
		0x48, 0xbb, 0x50, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, // movabs rbx,0xd0000050
		0xc7, 0x03, 0x02, 0x00, 0x00, 0x00, // mov dword [rbx],2
		0xeb, 0xfe, // jmp $
	}
	m, _ := newPayloadVM(t, code, payloadOpts{})
	fired := make(chan struct{}, 1)
	ok, err := m.Devices().WatchWrite(VirtioMMIOBase+0x50, 4, 2, func() {
		select {
		case fired <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("ioeventfd not available here")
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(30 * time.Second):
		t.Fatal("ioeventfd never fired")
	}
	if st := m.Stats(); st[0].MMIOExits != 0 {
		t.Errorf("%d MMIO exits: the doorbell write should not leave the kernel", st[0].MMIOExits)
	}
}

// TestSyscallFixup runs a ring-3 syscall whose LSTAR handler reports its
// CS. With the fix-up armed (from the marker port, on the vCPU thread, as
// a console hook would) the handler must run in ring 0 with the kernel CS
// from MSR_STAR, on PVM hosts as on real hardware.
func TestSyscallFixup(t *testing.T) {
	// mov dx,0x502; mov eax,1; out dx,eax; syscall; ud2; (pad to 0x20)
	// handler: mov eax,cs; mov dx,0x502; out dx,eax; mov dx,0x501; out dx,al; jmp $
	code := make([]byte, 0x2e)
	copy(code, []byte{0x66, 0xba, 0x02, 0x05, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xef, 0x0f, 0x05, 0x0f, 0x0b})
	copy(code[0x20:], []byte{0x8c, 0xc8, 0x66, 0xba, 0x02, 0x05, 0xef, 0x66, 0xba, 0x01, 0x05, 0xee, 0xeb, 0xfe})
	m, d := newPayloadVM(t, code, payloadOpts{after: func(m *Machine) error {
		s, err := m.VCPU(0).Sregs()
		if err != nil {
			return err
		}
		s.EFER |= 1 // SCE: enable syscall
		if err := m.VCPU(0).SetSregs(s); err != nil {
			return err
		}
		return m.VCPU(0).Do(func(k *kvm.VCPU) error {
			return k.SetMSRs([]kvm.MSREntry{
				{Index: 0xc0000081, Data: 0x10 << 32},         // STAR: kernel CS 0x10, SS 0x18
				{Index: 0xc0000082, Data: payloadBase + 0x20}, // LSTAR
				{Index: 0xc0000084, Data: 0x200},              // SFMASK: clear IF
			})
		})
	}})
	m.opts.PVMFixups = true // also exercise the path on non-PVM hosts
	d.onMarker = func(v uint32) {
		if v == 1 {
			m.EnableSyscallFixup()
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, m)
	if e.Kind != ExitPoweroff {
		r, _ := m.VCPU(0).Regs()
		t.Fatalf("exit = %v, want poweroff from the handler; markers %#x, RIP %#x", e, d.markers, r.RIP)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.markers) != 2 || d.markers[1] != 0x10 {
		t.Fatalf("markers %#x, want [1 0x10]: the handler must run with CS 0x10", d.markers)
	}
}

// TestDeviceCallsAfterClose: device goroutines can outlive the machine;
// their interrupts and exit requests must fail or do nothing, never reach
// a reused fd or an unmapped kvm_run page.
func TestDeviceCallsAfterClose(t *testing.T) {
	m, _ := newPayloadVM(t, payloadSMP, payloadOpts{vcpus: 2})
	irq, err := m.Devices().ClaimIRQ("late", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.RequestExit(ExitPoweroff, "late device")
	m.EnableSyscallFixup()
	if err := irq.Trigger(); err == nil {
		t.Error("Trigger after Close succeeded")
	}
	if st := m.Stats(); len(st) != 2 {
		t.Errorf("Stats after Close: %d vCPUs", len(st))
	}
}
