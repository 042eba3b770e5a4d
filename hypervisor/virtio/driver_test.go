package virtio

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"vsh/hypervisor/memory"
)

// The test driver plays the guest: it owns a memory.Guest made from a plain
// []byte, speaks the virtio-mmio register protocol and builds descriptor
// chains the way Linux's virtio_ring does.

const (
	testMemBase = 0x100000
	testMemSize = 8 << 20
	guardSize   = 64 << 10
	guardByte   = 0xa5
)

// countingIRQ is a bus.Interrupt that counts edges and wakes waiters.
type countingIRQ struct {
	mu       sync.Mutex
	triggers int
	level    bool
	wake     chan struct{}
}

func newCountingIRQ() *countingIRQ { return &countingIRQ{wake: make(chan struct{}, 1)} }

func (i *countingIRQ) Trigger() error {
	i.mu.Lock()
	i.triggers++
	i.mu.Unlock()
	select {
	case i.wake <- struct{}{}:
	default:
	}
	return nil
}

func (i *countingIRQ) SetLevel(high bool) error {
	i.mu.Lock()
	i.level = high
	i.mu.Unlock()
	if high {
		return i.Trigger()
	}
	return nil
}

func (i *countingIRQ) count() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.triggers
}

type driverQueue struct {
	size               uint16
	desc, avail, used  uint64
	availIdx, lastUsed uint16
	freeHead           uint16
	usedEvent          *uint16 // used_event to publish; nil: lastUsed
}

type testDriver struct {
	t      testing.TB
	ram    []byte
	mem    *memory.Guest
	irq    *countingIRQ
	mmio   *MMIO
	next   uint64 // bump allocator
	queues []*driverQueue
}

func newTestDriver(t testing.TB, dev Device) *testDriver {
	t.Helper()
	// Guest RAM sits between two guard areas that must never change: a
	// device that reached outside guest memory would show up here.
	backing := make([]byte, testMemSize+2*guardSize)
	for i := range backing {
		backing[i] = guardByte
	}
	ram := backing[guardSize : guardSize+testMemSize : guardSize+testMemSize]
	clear(ram)
	mem, err := memory.New(memory.Region{GPA: testMemBase, Host: ram})
	if err != nil {
		t.Fatal(err)
	}
	irq := newCountingIRQ()
	d := &testDriver{t: t, ram: ram, mem: mem, irq: irq, mmio: NewMMIO(dev, mem, irq), next: testMemBase}
	t.Cleanup(func() {
		d.mmio.Close()
		for i, b := range backing {
			if (i < guardSize || i >= guardSize+testMemSize) && b != guardByte {
				t.Errorf("host memory outside guest RAM was modified at backing offset %d", i)
				return
			}
		}
	})
	return d
}

func (d *testDriver) read32(off uint64) uint32 {
	var b [4]byte
	d.mmio.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (d *testDriver) write32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.mmio.Write(off, b[:])
}

func (d *testDriver) alloc(n, align uint64) uint64 {
	d.next = (d.next + align - 1) &^ (align - 1)
	a := d.next
	d.next += n
	if d.next > testMemBase+testMemSize {
		d.t.Fatalf("test driver out of guest memory")
	}
	return a
}

func (d *testDriver) bytes(gpa, n uint64) []byte {
	b, err := d.mem.Slice(gpa, n)
	if err != nil {
		d.t.Fatalf("test driver: %v", err)
	}
	return b
}

// negotiate runs reset, ACKNOWLEDGE, DRIVER and feature negotiation and
// reports whether the device accepted want (FEATURES_OK stuck).
func (d *testDriver) negotiate(want uint64) bool {
	d.write32(RegStatus, 0)
	if d.read32(RegMagicValue) != MagicValue || d.read32(RegVersion) != Version {
		d.t.Fatalf("bad magic/version")
	}
	d.write32(RegStatus, StatusAcknowledge)
	d.write32(RegStatus, StatusAcknowledge|StatusDriver)
	d.write32(RegDeviceFeaturesSel, 0)
	offered := uint64(d.read32(RegDeviceFeatures))
	d.write32(RegDeviceFeaturesSel, 1)
	offered |= uint64(d.read32(RegDeviceFeatures)) << 32
	if offered&FeatureVersion1 == 0 {
		d.t.Fatalf("device does not offer VIRTIO_F_VERSION_1")
	}
	d.write32(RegDriverFeaturesSel, 0)
	d.write32(RegDriverFeatures, uint32(want))
	d.write32(RegDriverFeaturesSel, 1)
	d.write32(RegDriverFeatures, uint32(want>>32))
	d.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	return d.read32(RegStatus)&StatusFeaturesOK != 0
}

// setupQueues programs every queue with the given size (capped by
// QueueNumMax) and enables it.
func (d *testDriver) setupQueues(size uint16) {
	d.queues = nil
	for i := uint32(0); ; i++ {
		d.write32(RegQueueSel, i)
		max := d.read32(RegQueueNumMax)
		if max == 0 {
			break
		}
		n := min(uint32(size), max)
		q := &driverQueue{size: uint16(n)}
		q.desc = d.alloc(16*uint64(n), 16)
		q.avail = d.alloc(8+2*uint64(n), 4)
		q.used = d.alloc(8+8*uint64(n), 4)
		d.write32(RegQueueNum, n)
		d.write32(RegQueueDescLow, uint32(q.desc))
		d.write32(RegQueueDescHigh, uint32(q.desc>>32))
		d.write32(RegQueueDriverLow, uint32(q.avail))
		d.write32(RegQueueDriverHigh, uint32(q.avail>>32))
		d.write32(RegQueueDeviceLow, uint32(q.used))
		d.write32(RegQueueDeviceHigh, uint32(q.used>>32))
		d.write32(RegQueueReady, 1)
		if d.read32(RegQueueReady) != 1 {
			d.t.Fatalf("queue %d did not become ready: %v", i, d.mmio.Err())
		}
		d.queues = append(d.queues, q)
	}
}

// start brings the device up with the given features (VERSION_1 added).
func (d *testDriver) start(features uint64, size uint16) {
	d.t.Helper()
	if !d.negotiate(features | FeatureVersion1) {
		d.t.Fatalf("device refused features %#x", features)
	}
	d.setupQueues(size)
	d.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	if s := d.read32(RegStatus); s&StatusDriverOK == 0 || s&StatusNeedsReset != 0 {
		d.t.Fatalf("device status %#x after DRIVER_OK: %v", s, d.mmio.Err())
	}
}

// buf is one buffer of a chain the driver adds: data to send (readable),
// or n bytes of room (writable).
type buf struct {
	data  []byte
	n     int
	write bool
}

func out(p []byte) buf { return buf{data: p} }
func in(n int) buf     { return buf{n: n, write: true} }

// add places a chain on queue qi and returns its head and the guest
// addresses of its buffers. It does not notify.
func (d *testDriver) add(qi int, bufs ...buf) (uint16, []uint64) {
	q := d.queues[qi]
	head := q.freeHead
	addrs := make([]uint64, len(bufs))
	for i, b := range bufs {
		idx := (head + uint16(i)) % q.size
		n := len(b.data)
		if b.write {
			n = b.n
		}
		a := d.alloc(uint64(max(n, 1)), 8)
		addrs[i] = a
		copy(d.bytes(a, uint64(n)), b.data)
		var flags uint16
		if b.write {
			flags |= descFWrite
		}
		next := (idx + 1) % q.size
		if i < len(bufs)-1 {
			flags |= descFNext
		}
		d.putDesc(qi, idx, a, uint32(n), flags, next)
	}
	q.freeHead = (head + uint16(len(bufs))) % q.size
	d.publish(qi, head)
	return head, addrs
}

func (d *testDriver) putDesc(qi int, idx uint16, addr uint64, n uint32, flags, next uint16) {
	q := d.queues[qi]
	e := d.bytes(q.desc+16*uint64(idx), 16)
	binary.LittleEndian.PutUint64(e[0:], addr)
	binary.LittleEndian.PutUint32(e[8:], n)
	binary.LittleEndian.PutUint16(e[12:], flags)
	binary.LittleEndian.PutUint16(e[14:], next)
}

// publish puts head in the avail ring and bumps avail idx.
func (d *testDriver) publish(qi int, head uint16) {
	q := d.queues[qi]
	binary.LittleEndian.PutUint16(d.bytes(q.avail+4+2*uint64(q.availIdx%q.size), 2), head)
	q.availIdx++
	// used_event: interrupt on every used entry.
	ev := q.lastUsed
	if q.usedEvent != nil {
		ev = *q.usedEvent
	}
	store16(d.mem, q.avail+4+2*uint64(q.size), ev)
	store16(d.mem, q.avail+2, q.availIdx)
}

func (d *testDriver) notify(qi int) { d.write32(RegQueueNotify, uint32(qi)) }

func (d *testDriver) usedIdx(qi int) uint16 {
	v, _ := load16(d.mem, d.queues[qi].used+2)
	return v
}

// waitUsed waits for the next used element on queue qi and returns it.
func (d *testDriver) waitUsed(qi int) (id uint16, n uint32) {
	d.t.Helper()
	q := d.queues[qi]
	deadline := time.After(10 * time.Second)
	for d.usedIdx(qi) == q.lastUsed {
		select {
		case <-d.irq.wake:
		case <-time.After(time.Millisecond):
		case <-deadline:
			d.t.Fatalf("queue %d: no used buffer (status %#x, err %v)", qi, d.read32(RegStatus), d.mmio.Err())
		}
	}
	e := d.bytes(q.used+4+8*uint64(q.lastUsed%q.size), 8)
	q.lastUsed++
	return uint16(binary.LittleEndian.Uint32(e)), binary.LittleEndian.Uint32(e[4:])
}

// waitNeedsReset waits until the device reports NEEDS_RESET.
func (d *testDriver) waitNeedsReset() {
	d.t.Helper()
	deadline := time.After(10 * time.Second)
	for d.read32(RegStatus)&StatusNeedsReset == 0 {
		select {
		case <-d.irq.wake:
		case <-time.After(time.Millisecond):
		case <-deadline:
			d.t.Fatalf("device never reported NEEDS_RESET")
		}
	}
	if d.read32(RegInterruptStatus)&InterruptConfigChange == 0 {
		d.t.Errorf("NEEDS_RESET without a config change interrupt")
	}
}

// waitIRQs waits until at least n interrupts were raised.
func (d *testDriver) waitIRQs(n int) {
	d.t.Helper()
	deadline := time.After(10 * time.Second)
	for d.irq.count() < n {
		select {
		case <-d.irq.wake:
		case <-time.After(time.Millisecond):
		case <-deadline:
			d.t.Fatalf("only %d of %d interrupts raised", d.irq.count(), n)
		}
	}
}
