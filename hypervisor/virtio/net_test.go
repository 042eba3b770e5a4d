package virtio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/network/netns"
)

// memNet is an in-memory NetBackend: frames the host sends to the guest go
// through toGuest, frames the guest sends arrive on fromGuest.
type memNet struct {
	toGuest   chan []byte
	fromGuest chan []byte

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed when the deadline changes
	offload  int
	offloads int // SetOffload calls
}

func newMemNet() *memNet {
	return &memNet{toGuest: make(chan []byte, 64), fromGuest: make(chan []byte, 64), changed: make(chan struct{})}
}

func (m *memNet) Read(p []byte) (int, error) {
	for {
		m.mu.Lock()
		d, changed := m.deadline, m.changed
		m.mu.Unlock()
		var timeout <-chan time.Time
		if !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = time.After(wait)
		}
		select {
		case f := <-m.toGuest:
			return copy(p, f), nil
		case <-changed:
		case <-timeout:
		}
	}
}

func (m *memNet) Write(p []byte) (int, error) {
	select {
	case m.fromGuest <- append([]byte(nil), p...):
	default: // a full sink drops, like a tap's queue
	}
	return len(p), nil
}

func (m *memNet) SetReadDeadline(t time.Time) error {
	m.mu.Lock()
	m.deadline = t
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	return nil
}

func (m *memNet) SetOffload(flags int) error {
	m.mu.Lock()
	m.offload = flags
	m.offloads++
	m.mu.Unlock()
	return nil
}

func (m *memNet) recv(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-m.fromGuest:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no frame from the guest")
		return nil
	}
}

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// testFrame returns an Ethernet frame of n bytes with a recognisable body.
func testFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 1, 2, 3, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = seed + byte(i*7)
	}
	return f
}

func netHdr(flags, gso byte) []byte {
	h := make([]byte, NetHdrSize)
	h[0], h[1] = flags, gso
	return h
}

func TestNetConfigAndFeatures(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		n := NewNet(newMemNet(), NetConfig{MAC: testMAC, VnetHdr: vnet})
		d := newTestDriver(t, n)
		d.negotiate(FeatureVersion1)
		var mac [6]byte
		d.mmio.Read(RegConfig, mac[:])
		if mac != testMAC {
			t.Errorf("config MAC %x", mac)
		}
		var st [2]byte
		d.mmio.Read(RegConfig+6, st[:])
		if binary.LittleEndian.Uint16(st[:]) != NetStatusLinkUp {
			t.Errorf("status %x, want link up", st)
		}
		d.mmio.Read(RegConfig+8, st[:])
		if binary.LittleEndian.Uint16(st[:]) != 1 {
			t.Errorf("max_virtqueue_pairs %x", st)
		}
		f := n.Features()
		if f&(NetFMAC|NetFStatus|NetFMrgRxbuf) != NetFMAC|NetFStatus|NetFMrgRxbuf {
			t.Errorf("features %#x lack MAC/STATUS/MRG_RXBUF", f)
		}
		if got := f&(NetFCsum|NetFHostTSO4|NetFGuestTSO6) != 0; got != vnet {
			t.Errorf("vnet header %v: offloads offered %v", vnet, got)
		}
		d.mmio.Write(RegConfig, []byte{1, 2, 3, 4, 5, 6})
		d.mmio.Read(RegConfig, mac[:])
		if mac != testMAC {
			t.Errorf("the guest changed the MAC to %x", mac)
		}
	}
}

func TestNetTransmit(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		be := newMemNet()
		n := NewNet(be, NetConfig{MAC: testMAC, VnetHdr: vnet})
		d := newTestDriver(t, n)
		d.start(FeatureRingEventIdx|NetFMAC|map[bool]uint64{true: NetFCsum | NetFHostTSO4}[vnet], 64)
		frame := testFrame(1514, 3)
		hdr := netHdr(0, 0)
		if vnet {
			hdr = netHdr(netHdrFNeedsCsum, netGSOTCPv4)
			binary.LittleEndian.PutUint16(hdr[4:], 1448)
		}
		// Header and frame split over three descriptors, as Linux does.
		d.add(1, out(hdr), out(frame[:100]), out(frame[100:]))
		d.notify(1)
		if _, n := d.waitUsed(1); n != 0 {
			t.Errorf("TX used length %d, want 0", n)
		}
		got := be.recv(t)
		want := frame
		if vnet {
			want = append(append([]byte(nil), hdr...), frame...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("vnet %v: backend got %d bytes, want %d", vnet, len(got), len(want))
		}
		if s := n.Stats(); s.TxPackets != 1 || s.TxBytes != 1514 || s.TxErrs != 0 {
			t.Errorf("stats %+v", s)
		}
	}
}

func TestNetReceiveMergeable(t *testing.T) {
	be := newMemNet()
	n := NewNet(be, NetConfig{MAC: testMAC, VnetHdr: true})
	d := newTestDriver(t, n)
	d.start(FeatureRingEventIdx|NetFMrgRxbuf|NetFGuestCsum|NetFGuestTSO4, 64)
	if be.offload != 0x1|0x2 { // TUN_F_CSUM|TUN_F_TSO4
		t.Errorf("offloads set on the backend %#x", be.offload)
	}
	frame := testFrame(3000, 9)
	hdr := netHdr(netHdrFNeedsCsum, netGSOTCPv4)
	be.toGuest <- append(hdr, frame...)
	var addrs []uint64
	for i := 0; i < 4; i++ {
		_, a := d.add(0, in(1024))
		addrs = append(addrs, a[0])
	}
	d.notify(0)
	var got []byte
	var lens []uint32
	for i := 0; i < 3; i++ {
		id, n := d.waitUsed(0)
		lens = append(lens, n)
		got = append(got, d.bytes(addrs[id], uint64(n))...)
	}
	if lens[0] != 1024 || lens[1] != 1024 || lens[2] != 3012-2048 {
		t.Fatalf("used lengths %v", lens)
	}
	if nb := binary.LittleEndian.Uint16(got[10:]); nb != 3 {
		t.Errorf("num_buffers %d, want 3", nb)
	}
	if got[0] != netHdrFNeedsCsum || got[1] != netGSOTCPv4 || !bytes.Equal(got[NetHdrSize:], frame) {
		t.Errorf("received frame differs")
	}
	if s := n.Stats(); s.RxPackets != 1 || s.RxBytes != 3000 {
		t.Errorf("stats %+v", s)
	}
}

func TestNetReceiveSingleBuffer(t *testing.T) {
	be := newMemNet()
	n := NewNet(be, NetConfig{MAC: testMAC})
	d := newTestDriver(t, n)
	d.start(FeatureRingEventIdx, 64)
	// A buffer too small for the frame comes back empty and the frame is
	// dropped; the next frame goes into the next buffer.
	d.add(0, in(100))
	_, big := d.add(0, in(2048))
	d.notify(0)
	be.toGuest <- testFrame(1000, 1)
	be.toGuest <- testFrame(60, 2)
	if id, n := d.waitUsed(0); n != 0 || id != 0 {
		t.Fatalf("small buffer: id %d, %d bytes", id, n)
	}
	id, ln := d.waitUsed(0)
	if id != 1 || ln != NetHdrSize+60 {
		t.Fatalf("big buffer: id %d, %d bytes", id, ln)
	}
	got := d.bytes(big[0], uint64(ln))
	if binary.LittleEndian.Uint16(got[10:]) != 1 || !bytes.Equal(got[NetHdrSize:], testFrame(60, 2)) || got[0] != 0 || got[1] != 0 {
		t.Errorf("received %x", got[:NetHdrSize])
	}
	if s := n.Stats(); s.RxPackets != 1 || s.RxDrops != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestNetLinkState(t *testing.T) {
	be := newMemNet()
	n := NewNet(be, NetConfig{MAC: testMAC, LinkDown: true})
	d := newTestDriver(t, n)
	var st [2]byte
	d.mmio.Read(RegConfig+6, st[:])
	if st[0] != 0 {
		t.Fatalf("link up although configured down")
	}
	d.start(FeatureRingEventIdx|NetFStatus, 64)
	gen := d.read32(RegConfigGeneration)
	n.SetLink(true)
	if d.read32(RegInterruptStatus)&InterruptConfigChange == 0 || d.read32(RegConfigGeneration) == gen {
		t.Fatalf("no config change interrupt for link up")
	}
	d.mmio.Read(RegConfig+6, st[:])
	if st[0] != NetStatusLinkUp || !n.LinkUp() {
		t.Fatalf("status %x after SetLink(true)", st)
	}
	d.write32(RegInterruptACK, InterruptConfigChange)
	n.SetLink(false)
	if d.read32(RegInterruptStatus)&InterruptConfigChange == 0 {
		t.Fatalf("no config change interrupt for link down")
	}
	// Link down: transmitted frames are dropped, received ones too.
	d.add(1, out(netHdr(0, 0)), out(testFrame(60, 0)))
	d.notify(1)
	d.waitUsed(1)
	d.add(0, in(2048))
	d.notify(0)
	be.toGuest <- testFrame(60, 1)
	deadline := time.After(10 * time.Second)
	for n.Stats().RxDrops == 0 {
		select {
		case <-deadline:
			t.Fatal("received frame not dropped while the link is down")
		case <-time.After(time.Millisecond):
		}
	}
	if s := n.Stats(); s.TxDrops != 1 || s.TxPackets != 0 || s.RxPackets != 0 {
		t.Errorf("stats while down %+v", s)
	}
	select {
	case <-be.fromGuest:
		t.Fatal("a frame left while the link is down")
	default:
	}
	// Up again, the buffer still posted gets the next frame.
	n.SetLink(true)
	be.toGuest <- testFrame(70, 1)
	if _, ln := d.waitUsed(0); ln != NetHdrSize+70 {
		t.Fatalf("after link up: %d bytes", ln)
	}
}

func TestNetBadDescriptors(t *testing.T) {
	t.Run("short and oversized frames", func(t *testing.T) {
		be := newMemNet()
		n := NewNet(be, NetConfig{MAC: testMAC, VnetHdr: true})
		d := newTestDriver(t, n)
		d.start(FeatureRingEventIdx, 64)
		d.add(1, out(make([]byte, 5)))                                     // shorter than a header
		d.add(1, out(netHdr(0, netGSOTCPv4)), out(testFrame(100, 0)))      // TSO not negotiated
		d.add(1, out(netHdr(netHdrFNeedsCsum, 0)), out(testFrame(100, 0))) // CSUM not negotiated
		d.add(1, out(netHdr(0, 0)), out(make([]byte, netMaxFrame+1)))      // too long
		d.add(1, in(64))                                                   // nothing readable
		d.notify(1)
		for i := 0; i < 5; i++ {
			d.waitUsed(1)
		}
		if s := n.Stats(); s.TxErrs != 5 || s.TxPackets != 0 {
			t.Errorf("stats %+v", s)
		}
		if d.read32(RegStatus)&StatusNeedsReset != 0 {
			t.Errorf("bad frames broke the device: %v", d.mmio.Err())
		}
		// The device still works.
		d.add(1, out(netHdr(0, 0)), out(testFrame(60, 0)))
		d.notify(1)
		be.recv(t)
	})
	t.Run("buffer outside guest memory", func(t *testing.T) {
		n := NewNet(newMemNet(), NetConfig{MAC: testMAC})
		d := newTestDriver(t, n)
		d.start(FeatureRingEventIdx, 64)
		d.putDesc(1, 0, testMemBase+testMemSize-8, 64, 0, 0)
		d.publish(1, 0)
		d.notify(1)
		d.waitNeedsReset()
	})
	t.Run("receive chain with no writable buffer", func(t *testing.T) {
		be := newMemNet()
		n := NewNet(be, NetConfig{MAC: testMAC})
		d := newTestDriver(t, n)
		d.start(FeatureRingEventIdx|NetFMrgRxbuf, 64)
		d.add(0, out(make([]byte, 64)))
		_, a := d.add(0, in(2048))
		d.notify(0)
		be.toGuest <- testFrame(60, 5)
		if id, ln := d.waitUsed(0); id != 0 || ln != 0 {
			t.Fatalf("read-only chain: id %d len %d", id, ln)
		}
		if id, ln := d.waitUsed(0); id != 1 || ln != NetHdrSize+60 || !bytes.Equal(d.bytes(a[0]+NetHdrSize, 60), testFrame(60, 5)) {
			t.Fatalf("next chain: id %d len %d", id, ln)
		}
		if s := n.Stats(); s.RxErrs != 1 || s.RxPackets != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestNetResetWhileReceiving(t *testing.T) {
	be := newMemNet()
	n := NewNet(be, NetConfig{MAC: testMAC})
	d := newTestDriver(t, n)
	for round := 0; round < 3; round++ {
		d.next = testMemBase
		clear(d.ram) // fresh rings, as a new driver allocates
		d.start(FeatureRingEventIdx, 64)
		_, a := d.add(0, in(2048))
		d.notify(0)
		be.toGuest <- testFrame(80, byte(round))
		if _, ln := d.waitUsed(0); ln != NetHdrSize+80 || !bytes.Equal(d.bytes(a[0]+NetHdrSize, 80), testFrame(80, byte(round))) {
			t.Fatalf("round %d: %d bytes", round, ln)
		}
		// The receive goroutine now blocks reading the backend; a driver
		// reset must stop it.
		d.add(0, in(2048))
		d.notify(0)
		d.write32(RegStatus, 0)
	}
}

func TestNetOffloadFlags(t *testing.T) {
	for _, c := range []struct {
		f    uint64
		want int
	}{
		{0, 0},
		{NetFGuestTSO4, 0}, // TSO without checksum offload is meaningless
		{NetFGuestCsum, 1},
		{NetFGuestCsum | NetFGuestTSO4 | NetFGuestTSO6 | NetFGuestECN | NetFGuestUFO, 0x1f},
		{NetFGuestCsum | NetFGuestECN, 1},
	} {
		if got := tunOffloads(c.f); got != c.want {
			t.Errorf("tunOffloads(%#x) = %#x, want %#x", c.f, got, c.want)
		}
	}
}

// FuzzNetTransmit sends arbitrary guest chains through the transmit path.
func FuzzNetTransmit(f *testing.F) {
	f.Add(append(netHdr(0, 0), testFrame(60, 0)...), []byte{12}, uint64(0), true)
	f.Add(append(netHdr(1, 1), testFrame(200, 0)...), []byte{3, 50}, uint64(NetFCsum|NetFHostTSO4), true)
	f.Add([]byte{1, 2, 3}, []byte{}, uint64(0), false)
	f.Fuzz(func(t *testing.T, data, cuts []byte, feat uint64, vnet bool) {
		be := newMemNet()
		n := NewNet(be, NetConfig{MAC: testMAC, VnetHdr: vnet})
		buf := make([]byte, netBufSize)
		n.send(&Chain{Readable: splitBufs(data, cuts)}, feat, buf)
		s := n.Stats()
		if s.TxPackets+s.TxErrs != 1 {
			t.Fatalf("one chain counted as %+v", s)
		}
		if s.TxPackets == 1 {
			got := <-be.fromGuest
			want := data
			if !vnet {
				want = data[NetHdrSize:]
			}
			if len(got) != len(want) || !bytes.Equal(got[min(len(got), NetHdrSize):], want[min(len(want), NetHdrSize):]) {
				t.Fatalf("sent %d bytes for %d", len(got), len(want))
			}
		}
	})
}

// benchBackend is an endless source and a counting sink: Read hands out
// the same frame at once, Write only counts, so the benchmarks measure the
// device and its queues, not a backend.
type benchBackend struct {
	frame    []byte
	written  atomic.Int64
	mu       sync.Mutex
	deadline time.Time
}

func (b *benchBackend) Read(p []byte) (int, error) {
	b.mu.Lock()
	d := b.deadline
	b.mu.Unlock()
	if !d.IsZero() && !time.Now().Before(d) {
		return 0, os.ErrDeadlineExceeded
	}
	return copy(p, b.frame), nil
}

func (b *benchBackend) Write(p []byte) (int, error) {
	b.written.Add(1)
	return len(p), nil
}

func (b *benchBackend) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	b.deadline = t
	b.mu.Unlock()
	return nil
}

func benchNet(b *testing.B, be NetBackend, size int) *testDriver {
	n := NewNet(be, NetConfig{MAC: testMAC, VnetHdr: true})
	d := newTestDriver(b, n)
	d.start(FeatureRingEventIdx|NetFMrgRxbuf|NetFCsum|NetFGuestCsum, 256)
	b.SetBytes(int64(size))
	return d
}

// BenchmarkNetTX measures guest-to-host frames through the transmit
// queue, the guest queueing up to 128 frames per notification.
func BenchmarkNetTX(b *testing.B) {
	for _, size := range []int{64, 1514, 65000} {
		b.Run(sizeName(size), func(b *testing.B) {
			be := &benchBackend{}
			d := benchNet(b, be, size)
			q := d.queues[1]
			ha, fa := d.alloc(NetHdrSize, 8), d.alloc(uint64(size), 8)
			copy(d.bytes(fa, uint64(size)), testFrame(size, 0))
			b.ResetTimer()
			for i := 0; i < b.N; {
				k := min(128, b.N-i)
				for j := 0; j < k; j++ {
					idx := q.freeHead
					d.putDesc(1, idx, ha, NetHdrSize, descFNext, (idx+1)%q.size)
					d.putDesc(1, (idx+1)%q.size, fa, uint32(size), 0, 0)
					q.freeHead = (idx + 2) % q.size
					d.publish(1, idx)
				}
				d.notify(1)
				for j := 0; j < k; j++ {
					d.waitUsed(1)
				}
				i += k
			}
			b.StopTimer()
			if be.written.Load() != int64(b.N) {
				b.Fatalf("%d frames written for %d", be.written.Load(), b.N)
			}
		})
	}
}

// BenchmarkNetRX measures host-to-guest frames through the receive queue
// into mergeable 4 KiB buffers, the guest reposting them in batches.
func BenchmarkNetRX(b *testing.B) {
	for _, size := range []int{64, 1514, 65000} {
		b.Run(sizeName(size), func(b *testing.B) {
			be := &benchBackend{frame: append(netHdr(0, 0), testFrame(size, 0)...)}
			d := benchNet(b, be, size)
			q := d.queues[0]
			bufs := make([]uint64, q.size)
			for i := range bufs {
				bufs[i] = d.alloc(4096, 8)
			}
			need := (size + NetHdrSize + 4095) / 4096
			post := func(k int) {
				for j := 0; j < k; j++ {
					idx := q.freeHead
					d.putDesc(0, idx, bufs[idx], 4096, descFWrite, 0)
					q.freeHead = (idx + 1) % q.size
					d.publish(0, idx)
				}
				d.notify(0)
			}
			batch := max(128/need, 1)
			b.ResetTimer()
			for i := 0; i < b.N; {
				k := min(batch, b.N-i)
				post(k * need)
				for j := 0; j < k*need; j++ {
					d.waitUsed(0)
				}
				i += k
			}
		})
	}
}

func sizeName(n int) string {
	switch n {
	case 64:
		return "64B"
	case 1514:
		return "1514B"
	}
	return "64KiB"
}

// testTap is a tap opened with a 12-byte vnet header, as
// network.OpenTap does (that package is not imported here, to keep the
// virtio tests free of the network stack's dependencies).
type testTap struct {
	*os.File
	name string
}

func (t *testTap) SetOffload(flags int) error {
	rc, err := t.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags) })
	return ierr
}

func openTestTap() (*testTap, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, _ := unix.NewIfreq("vnet%d")
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, NetHdrSize); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &testTap{File: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name()}, nil
}

// privateTap opens a tap in a network namespace of its own (see package
// netns), gives it addr with ip(8) and runs setup there. The host's
// network is never touched.
func privateTap(t testing.TB, addr string, setup ...func(tap string) error) *testTap {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tap test needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed: apt-get install iproute2")
	}
	ns, err := netns.New()
	if err != nil {
		t.Skipf("cannot set up a tap in a private namespace: %v", err)
	}
	var tap *testTap
	err = ns.Do(func() error {
		var err error
		if tap, err = openTestTap(); err != nil {
			return err
		}
		for _, args := range [][]string{{"link", "set", tap.name, "up"}, {"addr", "add", addr, "dev", tap.name}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %v: %v: %s", args, err, out)
			}
		}
		for _, fn := range setup {
			if err := fn(tap.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if tap != nil {
			tap.Close()
		}
		ns.Close()
		t.Skipf("cannot set up a tap in a private namespace: %v", err)
	}
	t.Cleanup(func() {
		tap.Close()
		ns.Close()
	})
	return tap
}

// TestNetOverTap plays a guest on a real tap: it ARPs for the tap's
// address through the transmit queue and finds the kernel's reply in its
// receive buffers.
func TestNetOverTap(t *testing.T) {
	tap := privateTap(t, "10.1.0.1/24")
	guestMAC := [6]byte{0x52, 0x54, 0, 0x11, 0x22, 0x33}
	n := NewNet(tap, NetConfig{MAC: guestMAC, VnetHdr: true})
	d := newTestDriver(t, n)
	d.start(FeatureRingEventIdx|NetFMAC|NetFStatus|NetFCsum|NetFGuestCsum|NetFGuestTSO4|NetFGuestTSO6|NetFGuestECN|NetFGuestUFO|NetFHostTSO4|NetFHostTSO6|NetFHostUFO, 64)

	bufs := map[uint16]uint64{}
	for i := 0; i < 32; i++ {
		id, a := d.add(0, in(2048))
		bufs[id] = a[0]
	}
	d.notify(0)

	arp := append([]byte(nil), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	arp = append(arp, guestMAC[:]...)
	arp = append(arp, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	arp = append(arp, guestMAC[:]...)
	arp = append(arp, 10, 1, 0, 2, 0, 0, 0, 0, 0, 0, 10, 1, 0, 1)
	d.add(1, out(netHdr(0, 0)), out(arp))
	d.notify(1)
	d.waitUsed(1)

	for i := 0; ; i++ {
		if i == 32 {
			t.Fatalf("no ARP reply among 32 received frames; stats %+v", n.Stats())
		}
		id, ln := d.waitUsed(0)
		f := d.bytes(bufs[id], uint64(ln))
		if binary.LittleEndian.Uint16(f[10:]) != 1 {
			t.Fatalf("num_buffers %d", binary.LittleEndian.Uint16(f[10:]))
		}
		f = f[NetHdrSize:]
		if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 &&
			bytes.Equal(f[0:6], guestMAC[:]) && net.IP(f[28:32]).Equal(net.IPv4(10, 1, 0, 1)) {
			break
		}
	}
	if s := n.Stats(); s.TxPackets != 1 || s.TxBytes != uint64(len(arp)) || s.RxPackets == 0 {
		t.Errorf("stats %+v", s)
	}
	// A driver reset stops the receive goroutine blocked on the tap.
	d.write32(RegStatus, 0)
}

// BenchmarkNetTapTX sends 1514-byte frames from the test guest through
// virtio-net into a real tap (to a MAC nobody has, so the kernel drops them
// after the tap): the device's cost plus one write(2) per frame.
func BenchmarkNetTapTX(b *testing.B) {
	tap := privateTap(b, "10.1.0.1/24")
	const size = 1514
	n := NewNet(tap, NetConfig{MAC: testMAC, VnetHdr: true})
	d := newTestDriver(b, n)
	d.start(FeatureRingEventIdx|NetFMrgRxbuf|NetFCsum, 256)
	q := d.queues[1]
	frame := testFrame(size, 0)
	copy(frame, []byte{0x02, 0, 0, 0, 0, 0x99}) // unicast to nobody
	ha, fa := d.alloc(NetHdrSize, 8), d.alloc(size, 8)
	copy(d.bytes(fa, size), frame)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; {
		k := min(128, b.N-i)
		for j := 0; j < k; j++ {
			idx := q.freeHead
			d.putDesc(1, idx, ha, NetHdrSize, descFNext, (idx+1)%q.size)
			d.putDesc(1, (idx+1)%q.size, fa, size, 0, 0)
			q.freeHead = (idx + 2) % q.size
			d.publish(1, idx)
		}
		d.notify(1)
		for j := 0; j < k; j++ {
			d.waitUsed(1)
		}
		i += k
	}
	b.StopTimer()
	if s := n.Stats(); s.TxPackets != uint64(b.N) {
		b.Fatalf("stats %+v after %d frames", s, b.N)
	}
}

// BenchmarkNetTapRX floods the test guest with 1472-byte UDP datagrams a
// socket in the tap's namespace sends to the guest's address, and counts
// the frames the guest receives. The sender, the device and the test guest
// share the machine's cores, so on a small machine this measures their
// contention as much as the device.
func BenchmarkNetTapRX(b *testing.B) {
	var sock int
	tap := privateTap(b, "10.1.0.1/24", func(name string) error {
		if out, err := exec.Command("ip", "neigh", "add", "10.1.0.2", "lladdr", "52:54:00:12:34:56", "dev", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip neigh: %v: %s", err, out)
		}
		var err error
		sock, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	defer unix.Close(sock)
	n := NewNet(tap, NetConfig{MAC: testMAC, VnetHdr: true})
	d := newTestDriver(b, n)
	d.start(FeatureRingEventIdx|NetFMrgRxbuf, 256)
	q := d.queues[0]
	bufs := make([]uint64, q.size)
	for i := range bufs {
		bufs[i] = d.alloc(2048, 8)
	}
	post := func(k int) {
		for j := 0; j < k; j++ {
			idx := q.freeHead
			d.putDesc(0, idx, bufs[idx], 2048, descFWrite, 0)
			q.freeHead = (idx + 1) % q.size
			d.publish(0, idx)
		}
		d.notify(0)
	}
	post(int(q.size))
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		payload := make([]byte, 1472)
		to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 1, 0, 2}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Sendto(sock, payload, 0, to) // ENOBUFS when the tap is full: keep going
		}
	}()
	b.SetBytes(1514)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.waitUsed(0)
		post(1)
	}
	b.StopTimer()
	close(stop)
	<-sent
}
