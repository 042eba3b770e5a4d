package virtio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"vsh/hypervisor/memory"
)

// hostileCase builds a bad ring on a started blk device (queue size 8).
type hostileCase struct {
	name  string
	build func(d *testDriver)
}

func TestHostileRings(t *testing.T) {
	hdr := blkHeader(BlkTIn, 0)
	cases := []hostileCase{
		{"descriptor address outside guest memory", func(d *testDriver) {
			d.putDesc(0, 0, 0x10, 16, 0, 0)
			d.publish(0, 0)
		}},
		{"descriptor address past the end of guest memory", func(d *testDriver) {
			d.putDesc(0, 0, testMemBase+testMemSize-8, 16, 0, 0)
			d.publish(0, 0)
		}},
		{"address that wraps around", func(d *testDriver) {
			d.putDesc(0, 0, ^uint64(0)-4, 16, 0, 0)
			d.publish(0, 0)
		}},
		{"huge length", func(d *testDriver) {
			d.putDesc(0, 0, testMemBase, 0xffffffff, descFWrite, 0)
			d.publish(0, 0)
		}},
		{"descriptor loop", func(d *testDriver) {
			a := d.alloc(16, 16)
			copy(d.bytes(a, 16), hdr)
			d.putDesc(0, 0, a, 16, descFNext, 1)
			d.putDesc(0, 1, a, 16, descFNext, 0)
			d.publish(0, 0)
		}},
		{"chain longer than the queue", func(d *testDriver) {
			a := d.alloc(16, 16)
			for i := uint16(0); i < 8; i++ {
				d.putDesc(0, i, a, 16, descFNext, (i+1)%8)
			}
			d.publish(0, 3)
		}},
		{"next index out of range", func(d *testDriver) {
			d.putDesc(0, 0, d.alloc(16, 16), 16, descFNext, 200)
			d.publish(0, 0)
		}},
		{"head index out of range", func(d *testDriver) {
			d.publish(0, 9)
		}},
		{"avail index jump", func(d *testDriver) {
			q := d.queues[0]
			q.availIdx += 100
			d.publish(0, 0)
		}},
		{"readable after writable", func(d *testDriver) {
			a := d.alloc(64, 16)
			d.putDesc(0, 0, a, 16, descFNext|descFWrite, 1)
			d.putDesc(0, 1, a+16, 16, 0, 0)
			d.publish(0, 0)
		}},
		{"indirect table loop", func(d *testDriver) {
			tbl := d.alloc(32, 16)
			data := d.alloc(16, 16)
			for i := uint64(0); i < 2; i++ {
				e := d.bytes(tbl+16*i, 16)
				binary.LittleEndian.PutUint64(e, data)
				binary.LittleEndian.PutUint32(e[8:], 16)
				binary.LittleEndian.PutUint16(e[12:], descFNext)
				binary.LittleEndian.PutUint16(e[14:], uint16(1-i))
			}
			d.putDesc(0, 0, tbl, 32, descFIndirect, 0)
			d.publish(0, 0)
		}},
		{"nested indirect table", func(d *testDriver) {
			tbl := d.alloc(16, 16)
			e := d.bytes(tbl, 16)
			binary.LittleEndian.PutUint64(e, tbl)
			binary.LittleEndian.PutUint32(e[8:], 16)
			binary.LittleEndian.PutUint16(e[12:], descFIndirect)
			d.putDesc(0, 0, tbl, 16, descFIndirect, 0)
			d.publish(0, 0)
		}},
		{"indirect table of odd size", func(d *testDriver) {
			d.putDesc(0, 0, d.alloc(64, 16), 17, descFIndirect, 0)
			d.publish(0, 0)
		}},
		{"indirect table outside guest memory", func(d *testDriver) {
			d.putDesc(0, 0, testMemBase+testMemSize-16, 64, descFIndirect, 0)
			d.publish(0, 0)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := startBlk(t, tempDisk(t, 64<<10, ""), BlkConfig{})
			if len(d.queues) != 1 || d.queues[0].size != 128 {
				t.Fatalf("unexpected queue layout")
			}
			d.queues[0].size = 8
			// Re-program with a small queue so loops are cheap.
			d.write32(RegStatus, 0)
			d.start(FeatureRingEventIdx|FeatureRingIndirectDesc, 8)
			tc.build(d)
			d.notify(0)
			d.waitNeedsReset()
			if !errors.Is(d.mmio.Err(), ErrQueueBroken) {
				t.Errorf("Err() = %v, want ErrQueueBroken", d.mmio.Err())
			}
			t.Logf("device error: %v", d.mmio.Err())
			// A reset brings the device back.
			d.start(FeatureRingEventIdx, 8)
			if st, _, _ := blkRequest(d, BlkTFlush, 0, nil, 0); st != BlkSOK {
				t.Fatalf("flush after reset: status %d", st)
			}
		})
	}
}

func TestBadQueueSetup(t *testing.T) {
	cases := []struct {
		name             string
		size             uint32
		desc, avail, use uint64
	}{
		{"misaligned descriptor table", 8, testMemBase + 8, testMemBase + 0x1000, testMemBase + 0x2000},
		{"misaligned used ring", 8, testMemBase, testMemBase + 0x1000, testMemBase + 0x2002},
		{"size not a power of two", 6, testMemBase, testMemBase + 0x1000, testMemBase + 0x2000},
		{"size above the maximum", 1024, testMemBase, testMemBase + 0x1000, testMemBase + 0x2000},
		{"size zero", 0, testMemBase, testMemBase + 0x1000, testMemBase + 0x2000},
		{"rings outside guest memory", 8, 0, testMemBase + 0x1000, testMemBase + 0x2000},
		{"used ring crosses the end of memory", 8, testMemBase, testMemBase + 0x1000, testMemBase + testMemSize - 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDriver(t, NewRNG(RNGConfig{}))
			if !d.negotiate(FeatureVersion1) {
				t.Fatal("negotiation failed")
			}
			d.write32(RegQueueSel, 0)
			d.write32(RegQueueNum, tc.size)
			d.write32(RegQueueDescLow, uint32(tc.desc))
			d.write32(RegQueueDriverLow, uint32(tc.avail))
			d.write32(RegQueueDeviceLow, uint32(tc.use))
			d.write32(RegQueueReady, 1)
			if d.read32(RegQueueReady) != 0 {
				t.Fatalf("bad queue became ready")
			}
			if d.read32(RegStatus)&StatusNeedsReset == 0 {
				t.Fatalf("device not marked NEEDS_RESET")
			}
		})
	}
}

func TestWriteOnlyIntoWritableBuffers(t *testing.T) {
	// A read request whose data buffer is marked device-readable: the
	// device must not write into it.
	d, _ := startBlk(t, tempDisk(t, 64<<10, ""), BlkConfig{})
	ro := bytes.Repeat([]byte{0x5a}, 512)
	_, addrs := d.add(0, out(blkHeader(BlkTIn, 0)), out(ro), in(1))
	d.notify(0)
	_, n := d.waitUsed(0)
	if !bytes.Equal(d.bytes(addrs[1], 512), ro) {
		t.Fatalf("device wrote into a read-only descriptor")
	}
	if n != 1 {
		t.Fatalf("used length %d, want 1 (status only)", n)
	}
}

func TestEventIdxSuppression(t *testing.T) {
	d := newTestDriver(t, NewRNG(RNGConfig{}))
	d.start(FeatureRingEventIdx, 16)
	q := d.queues[0]
	d.add(0, in(8))
	d.notify(0)
	d.waitUsed(0)
	d.waitIRQs(1)
	before := d.irq.count()
	// Ask for no interrupt until used index 100.
	ev := uint16(100)
	q.usedEvent = &ev
	d.add(0, in(8))
	d.notify(0)
	d.waitUsed(0)
	// The device asks to be notified at the next avail index once it has
	// drained the ring.
	for {
		if ev, _ := load16(d.mem, q.used+4+8*uint64(q.size)); ev == q.availIdx {
			break
		}
		select {
		case <-d.irq.wake:
		case <-time.After(time.Millisecond):
		}
	}
	if got := d.irq.count(); got != before {
		t.Errorf("interrupt raised despite used_event: %d -> %d", before, got)
	}
}

func TestFeatureNegotiation(t *testing.T) {
	d := newTestDriver(t, NewRNG(RNGConfig{}))
	if d.negotiate(0) {
		t.Errorf("device accepted a driver without VIRTIO_F_VERSION_1")
	}
	if d.negotiate(FeatureVersion1 | 1<<40) {
		t.Errorf("device accepted a feature it did not offer")
	}
	if !d.negotiate(FeatureVersion1 | FeatureRingEventIdx) {
		t.Errorf("device refused valid features")
	}
	// DRIVER_OK without FEATURES_OK does not start the device.
	d.write32(RegStatus, 0)
	d.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusDriverOK)
	if d.read32(RegStatus)&StatusDriverOK != 0 {
		t.Errorf("DRIVER_OK accepted without FEATURES_OK")
	}
}

func TestRegisters(t *testing.T) {
	d := newTestDriver(t, NewRNG(RNGConfig{}))
	for _, r := range []struct {
		off  uint64
		want uint32
	}{{RegMagicValue, MagicValue}, {RegVersion, 2}, {RegDeviceID, IDRNG}, {RegVendorID, VendorID}} {
		if got := d.read32(r.off); got != r.want {
			t.Errorf("register %#x = %#x, want %#x", r.off, got, r.want)
		}
	}
	d.write32(RegDeviceFeaturesSel, 1)
	if d.read32(RegDeviceFeatures)&1 == 0 {
		t.Errorf("VERSION_1 not offered")
	}
	d.write32(RegQueueSel, 5)
	if d.read32(RegQueueNumMax) != 0 {
		t.Errorf("QueueNumMax of a missing queue is not 0")
	}
	var b [2]byte
	d.mmio.Read(RegMagicValue, b[:])
	if b != [2]byte{} {
		t.Errorf("16-bit register read returned %v", b)
	}
}

func TestCmdlineDevice(t *testing.T) {
	for _, tc := range []struct {
		size, base uint64
		irq        uint32
		want       string
	}{
		{0x1000, 0xd0000000, 5, "virtio_mmio.device=4K@0xd0000000:5"},
		{0x200, 0xd0001000, 6, "virtio_mmio.device=512@0xd0001000:6"},
		{1 << 20, 0xc0000000, 23, "virtio_mmio.device=1M@0xc0000000:23"},
	} {
		if got := CmdlineDevice(tc.size, tc.base, tc.irq); got != tc.want {
			t.Errorf("CmdlineDevice(%#x, %#x, %d) = %q, want %q", tc.size, tc.base, tc.irq, got, tc.want)
		}
	}
}

// FuzzQueue feeds a random descriptor table and rings to the queue walker.
// The input is copied to the start of guest RAM, where the rings of a queue
// of up to 16 entries live: descriptors at 0, avail ring at 256, used ring
// at 320; descriptor addresses can point anywhere in the 16 KiB of RAM.
func FuzzQueue(f *testing.F) {
	const base = 0x1000
	seed := make([]byte, 400)
	for i := 0; i < 4; i++ { // a chain 0 -> 1 -> 2 -> 3, the last two writable
		e := seed[16*i:]
		binary.LittleEndian.PutUint64(e, base+0x800+uint64(i)*64)
		binary.LittleEndian.PutUint32(e[8:], 64)
		flags := uint16(descFNext)
		if i >= 2 {
			flags |= descFWrite
		}
		if i == 3 {
			flags = descFWrite
		}
		binary.LittleEndian.PutUint16(e[12:], flags)
		binary.LittleEndian.PutUint16(e[14:], uint16(i+1))
	}
	binary.LittleEndian.PutUint16(seed[256+2:], 1) // avail idx 1, ring[0] = 0
	f.Add(seed, uint8(4), true)
	f.Add(seed, uint8(3), false)
	// Descriptor 0 points at an indirect table (descriptors 1-3 reused as
	// its entries); descriptor 5 loops onto itself.
	ind := append([]byte(nil), seed...)
	binary.LittleEndian.PutUint64(ind[0:], base+16)
	binary.LittleEndian.PutUint32(ind[8:], 48)
	binary.LittleEndian.PutUint16(ind[12:], descFIndirect)
	f.Add(ind, uint8(4), true)
	loop := append([]byte(nil), seed...)
	binary.LittleEndian.PutUint16(loop[16*3+12:], descFNext|descFWrite)
	binary.LittleEndian.PutUint16(loop[16*3+14:], 2)
	f.Add(loop, uint8(4), false)
	f.Add(bytes.Repeat([]byte{0xff}, 400), uint8(4), false)
	f.Fuzz(func(t *testing.T, data []byte, sizeLog uint8, eventIdx bool) {
		ram := make([]byte, 16<<10)
		copy(ram, data)
		mem, _ := memory.New(memory.Region{GPA: base, Host: ram})
		q := newQueue(0, 16)
		q.reset()
		q.mem = mem
		q.size = 1 << (sizeLog % 5)
		q.descAddr = base
		q.availAddr = base + 256
		q.usedAddr = base + 320
		q.eventIdx = eventIdx
		q.indirect = true
		failed := false
		q.fail = func(error) { failed = true }
		if err := q.validate(mem); err != nil {
			t.Fatal(err)
		}
		q.ready = true
		for i := 0; i < 64; i++ {
			c, err := q.Pop()
			if err != nil {
				if !failed || !errors.Is(err, ErrQueueBroken) {
					t.Fatalf("error %v without NEEDS_RESET", err)
				}
				return
			}
			if c == nil {
				return
			}
			if len(c.Readable)+len(c.Writable) > maxIndirect+int(q.size) {
				t.Fatalf("chain of %d buffers", len(c.Readable)+len(c.Writable))
			}
			c.WriteAt(bytes.Repeat([]byte{1}, 64), 0)
			q.Push(c.Head, uint32(c.WritableLen()))
			q.Signal()
		}
	})
}

func BenchmarkQueuePopPush(b *testing.B) {
	const base = 0x1000
	ram := make([]byte, 1<<20)
	mem, _ := memory.New(memory.Region{GPA: base, Host: ram})
	q := newQueue(0, 256)
	q.reset()
	q.mem = mem
	q.descAddr, q.availAddr, q.usedAddr = base, base+0x1000, base+0x2000
	q.eventIdx = true
	q.ready = true
	// Every descriptor is a 3-buffer chain like a blk request.
	for i := uint64(0); i < 256; i++ {
		e := ram[16*i:]
		binary.LittleEndian.PutUint64(e, base+0x10000+i*1024)
		binary.LittleEndian.PutUint32(e[8:], 512)
		flags := uint16(descFNext)
		if i%3 != 0 {
			flags |= descFWrite
		}
		if i%3 == 2 {
			flags = descFWrite
		}
		binary.LittleEndian.PutUint16(e[12:], flags)
		binary.LittleEndian.PutUint16(e[14:], uint16((i+1)%256))
	}
	b.ResetTimer()
	var avail uint16
	for i := 0; i < b.N; i++ {
		head := uint16(i%85) * 3
		store16(mem, base+0x1000+4+2*uint64(avail%256), head)
		avail++
		store16(mem, base+0x1000+2, avail)
		c, err := q.Pop()
		if err != nil || c == nil {
			b.Fatalf("pop: %v", err)
		}
		if err := q.Push(c.Head, 512); err != nil {
			b.Fatal(err)
		}
		q.Signal()
	}
}

func TestIndirectDescriptors(t *testing.T) {
	path := tempDisk(t, 64<<10, "")
	d, _ := startBlk(t, path, BlkConfig{})
	d.write32(RegStatus, 0)
	d.start(FeatureRingIndirectDesc, 16)
	// A read request as one indirect table: header, 2 data buffers, status.
	hdr := d.alloc(16, 16)
	copy(d.bytes(hdr, 16), blkHeader(BlkTGetID, 0))
	data := d.alloc(20, 8)
	status := d.alloc(1, 1)
	tbl := d.alloc(3*16, 16)
	for i, e := range []struct {
		addr  uint64
		n     uint32
		flags uint16
	}{{hdr, 16, descFNext}, {data, 20, descFNext | descFWrite}, {status, 1, descFWrite}} {
		b := d.bytes(tbl+16*uint64(i), 16)
		binary.LittleEndian.PutUint64(b, e.addr)
		binary.LittleEndian.PutUint32(b[8:], e.n)
		binary.LittleEndian.PutUint16(b[12:], e.flags)
		binary.LittleEndian.PutUint16(b[14:], uint16(i+1))
	}
	d.putDesc(0, 0, tbl, 3*16, descFIndirect, 0)
	d.publish(0, 0)
	d.notify(0)
	if _, n := d.waitUsed(0); n != 21 || d.bytes(status, 1)[0] != BlkSOK {
		t.Fatalf("indirect GET_ID: used %d status %d", n, d.bytes(status, 1)[0])
	}
}

func TestLevelTriggeredInterrupt(t *testing.T) {
	d := newTestDriver(t, NewRNG(RNGConfig{}))
	d.mmio.LevelTriggered = true
	d.start(0, 8)
	d.add(0, in(8))
	d.notify(0)
	d.waitUsed(0)
	d.waitIRQs(1)
	d.irq.mu.Lock()
	high := d.irq.level
	d.irq.mu.Unlock()
	if !high || d.read32(RegInterruptStatus)&InterruptUsedBuffer == 0 {
		t.Fatalf("line not raised for a used buffer")
	}
	d.write32(RegInterruptACK, InterruptUsedBuffer)
	d.irq.mu.Lock()
	high = d.irq.level
	d.irq.mu.Unlock()
	if high || d.read32(RegInterruptStatus) != 0 {
		t.Fatalf("line still high after ACK")
	}
}

func TestNotifyQueueDirect(t *testing.T) {
	// The ioeventfd path: NotifyQueue instead of a QueueNotify write.
	d := newTestDriver(t, NewRNG(RNGConfig{}))
	d.start(0, 8)
	d.mmio.NotifyQueue(-1) // out of range: ignored
	d.mmio.NotifyQueue(7)
	d.add(0, in(16))
	d.mmio.NotifyQueue(0)
	if _, n := d.waitUsed(0); n != 16 {
		t.Fatalf("used length %d, want 16", n)
	}
}
