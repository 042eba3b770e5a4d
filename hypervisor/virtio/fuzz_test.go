package virtio

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"vsh/hypervisor/memory"
)

// memDisk is an in-memory BlockBackend for fuzzing.
type memDisk struct{ b []byte }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }
func (m *memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
func (m *memDisk) Flush() error                             { return nil }
func (m *memDisk) Size() uint64                             { return uint64(len(m.b)) }
func (m *memDisk) Discard(off, n int64) error               { return errors.ErrUnsupported }
func (m *memDisk) WriteZeroes(off, n int64) error {
	clear(m.b[off : off+n])
	return nil
}
func (m *memDisk) Close() error { return nil }

// splitBufs cuts data into buffers at the given cut points.
func splitBufs(data []byte, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := min(int(c), len(data))
		out = append(out, data[:n:n])
		data = data[n:]
	}
	return append(out, data)
}

// FuzzBlkRequest runs arbitrary request chains through virtio-blk.
func FuzzBlkRequest(f *testing.F) {
	f.Add(blkHeader(BlkTIn, 0), []byte{16}, uint16(513), true)
	f.Add(append(blkHeader(BlkTOut, 3), make([]byte, 512)...), []byte{16, 100}, uint16(1), false)
	seg := make([]byte, 16)
	binary.LittleEndian.PutUint32(seg[8:], 4)
	f.Add(append(blkHeader(BlkTWriteZeroes, 0), seg...), []byte{16}, uint16(1), false)
	f.Add(blkHeader(BlkTGetID, 0), []byte{}, uint16(21), false)
	f.Fuzz(func(t *testing.T, readable, cuts []byte, writable uint16, ro bool) {
		disk := &memDisk{b: make([]byte, 64<<10)}
		blk := NewBlk(disk, BlkConfig{Serial: "fuzz", ReadOnly: ro, Discard: true})
		w := make([]byte, writable)
		c := &Chain{Readable: splitBufs(readable, cuts), Writable: splitBufs(w, cuts)}
		n := blk.Handle(c)
		if int(n) > len(w) {
			t.Fatalf("reported %d bytes written into %d", n, len(w))
		}
		if len(w) > 0 && w[len(w)-1] > BlkSUnsupp {
			t.Fatalf("status byte %d", w[len(w)-1])
		}
	})
}

// FuzzVsockPacket feeds arbitrary guest packets to the vsock device.
func FuzzVsockPacket(f *testing.F) {
	h := VsockHeader{SrcCID: testCID, DstCID: VsockHostCID, SrcPort: 1, DstPort: 2, Type: VsockTypeStream, Op: VsockOpRequest, BufAlloc: 4096}
	f.Add(h.Marshal(), []byte{44})
	h.Op, h.Len = VsockOpRW, 3
	f.Add(append(h.Marshal(), "abc"...), []byte{10, 40})
	h.Op, h.Len = VsockOpShutdown, 0
	f.Add(h.Marshal(), []byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, pkt, cuts []byte) {
		v, err := NewVsock(testCID, filepath.Join(dir, "f.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		v.active = true
		for i := 0; i < 2; i++ { // twice, so a REQUEST can meet its connection
			v.HandlePacket(&Chain{Readable: splitBufs(pkt, cuts)})
		}
		// Every queued reply must fit a receive buffer's header.
		for len(v.rxq) > 0 {
			w := make([]byte, VsockHeaderSize+64)
			c := &Chain{Writable: [][]byte{w}}
			if n := v.deliver(c); n < VsockHeaderSize {
				t.Fatalf("delivered %d bytes", n)
			}
		}
	})
}

// FuzzMMIORegisters drives the transport with arbitrary register accesses.
func FuzzMMIORegisters(f *testing.F) {
	prog := func(ops ...[3]uint32) []byte {
		var b []byte
		for _, op := range ops {
			b = binary.LittleEndian.AppendUint16(b, uint16(op[0]))
			b = binary.LittleEndian.AppendUint32(b, op[1])
			b = append(b, byte(op[2]))
		}
		return b
	}
	f.Add(prog([3]uint32{RegStatus, 1, 4}, [3]uint32{RegStatus, 3, 4}, [3]uint32{RegDriverFeaturesSel, 1, 4},
		[3]uint32{RegDriverFeatures, 1, 4}, [3]uint32{RegStatus, 11, 4}, [3]uint32{RegQueueNum, 8, 4},
		[3]uint32{RegQueueDescLow, 0x1000, 4}, [3]uint32{RegQueueDriverLow, 0x2000, 4}, [3]uint32{RegQueueDeviceLow, 0x3000, 4},
		[3]uint32{RegQueueReady, 1, 4}, [3]uint32{RegStatus, 15, 4}, [3]uint32{RegQueueNotify, 0, 4}))
	f.Fuzz(func(t *testing.T, ops []byte) {
		ram := make([]byte, 64<<10)
		mem, _ := memory.New(memory.Region{GPA: 0, Host: ram})
		dev := NewRNG(RNGConfig{})
		m := NewMMIO(dev, mem, newCountingIRQ())
		defer m.Close()
		for len(ops) >= 7 {
			off := uint64(binary.LittleEndian.Uint16(ops)) % 0x200
			val := ops[2:6]
			width := []int{1, 2, 4, 8}[ops[6]&3]
			data := make([]byte, width)
			copy(data, val)
			if ops[6]&4 != 0 {
				m.Read(off, data)
			} else {
				m.Write(off, data)
			}
			ops = ops[7:]
		}
	})
}

// TestNoGoroutineLeaks starts and resets every device and checks that their
// goroutines are gone.
func TestNoGoroutineLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		v, err := NewVsock(testCID, filepath.Join(dir, "leak.sock"))
		if err != nil {
			t.Fatal(err)
		}
		devs := []Device{NewRNG(RNGConfig{RateBytes: 10}), NewBalloon(BalloonConfig{StatsPeriod: time.Millisecond, FreePageReporting: true}),
			NewConsole(nil), v, NewBlk(&memDisk{b: make([]byte, 4096)}, BlkConfig{})}
		for _, dev := range devs {
			d := newTestDriver(t, dev)
			d.start(FeatureRingEventIdx, 16)
			d.write32(RegStatus, 0) // reset stops the device
			d.start(0, 16)
			d.mmio.Close()
		}
		v.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
