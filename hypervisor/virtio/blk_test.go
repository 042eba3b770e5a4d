package virtio

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func tempDisk(t testing.TB, size int64, dir string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func startBlk(t testing.TB, path string, cfg BlkConfig) (*testDriver, *Blk) {
	t.Helper()
	be, err := OpenRawFile(path, cfg.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	blk := NewBlk(be, cfg)
	t.Cleanup(func() { blk.Close() })
	d := newTestDriver(t, blk)
	d.start(FeatureRingEventIdx|blk.Features(), 128)
	return d, blk
}

func blkHeader(typ uint32, sector uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h, typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

// blkRequest sends one request and returns its status, the data the device
// wrote and the used length.
func blkRequest(d *testDriver, typ uint32, sector uint64, payload []byte, inLen int) (byte, []byte, uint32) {
	d.t.Helper()
	bufs := []buf{out(blkHeader(typ, sector))}
	if len(payload) > 0 {
		bufs = append(bufs, out(payload))
	}
	if inLen > 0 {
		bufs = append(bufs, in(inLen))
	}
	bufs = append(bufs, in(1))
	head, addrs := d.add(0, bufs...)
	d.notify(0)
	id, n := d.waitUsed(0)
	if id != head {
		d.t.Fatalf("used id %d, want head %d", id, head)
	}
	var data []byte
	if inLen > 0 {
		data = append(data, d.bytes(addrs[len(addrs)-2], uint64(inLen))...)
	}
	return d.bytes(addrs[len(addrs)-1], 1)[0], data, n
}

func TestBlkReadWrite(t *testing.T) {
	path := tempDisk(t, 1<<20, "")
	d, _ := startBlk(t, path, BlkConfig{Serial: "vsh-disk-1"})

	var cfg [8]byte
	d.mmio.Read(RegConfig, cfg[:])
	if got := binary.LittleEndian.Uint64(cfg[:]); got != (1<<20)/512 {
		t.Fatalf("capacity %d sectors, want %d", got, (1<<20)/512)
	}

	pattern := bytes.Repeat([]byte("vsh!"), 1024) // 4 KiB
	if st, _, n := blkRequest(d, BlkTOut, 8, pattern, 0); st != BlkSOK || n != 1 {
		t.Fatalf("write: status %d used %d", st, n)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(file[8*512:8*512+4096], pattern) {
		t.Fatalf("write did not reach the file")
	}
	st, data, n := blkRequest(d, BlkTIn, 8, nil, 4096)
	if st != BlkSOK || n != 4097 || !bytes.Equal(data, pattern) {
		t.Fatalf("read: status %d used %d match %v", st, n, bytes.Equal(data, pattern))
	}
	if st, _, _ := blkRequest(d, BlkTFlush, 0, nil, 0); st != BlkSOK {
		t.Fatalf("flush: status %d", st)
	}
	st, id, _ := blkRequest(d, BlkTGetID, 0, nil, 20)
	if st != BlkSOK || string(bytes.TrimRight(id, "\x00")) != "vsh-disk-1" {
		t.Fatalf("get-id: status %d id %q", st, id)
	}
	// Past the end of the disk, and a sector number that overflows.
	for _, sector := range []uint64{2047, 2048, 1 << 62, ^uint64(0)} {
		if st, _, _ := blkRequest(d, BlkTIn, sector, nil, 1024); st != BlkSIOErr {
			t.Errorf("read at sector %d: status %d, want IOERR", sector, st)
		}
	}
	if st, _, _ := blkRequest(d, 99, 0, nil, 0); st != BlkSUnsupp {
		t.Errorf("unknown request: status %d, want UNSUPP", st)
	}
	if d.irq.count() == 0 {
		t.Errorf("no interrupts raised")
	}
}

func TestBlkDiscardWriteZeroes(t *testing.T) {
	path := tempDisk(t, 1<<20, "")
	d, blk := startBlk(t, path, BlkConfig{Discard: true})
	if blk.Features()&(BlkFDiscard|BlkFWriteZeroes) != BlkFDiscard|BlkFWriteZeroes {
		t.Fatalf("features %#x lack DISCARD/WRITE_ZEROES", blk.Features())
	}
	ones := bytes.Repeat([]byte{0xff}, 64<<10)
	if st, _, _ := blkRequest(d, BlkTOut, 0, ones, 0); st != BlkSOK {
		t.Fatalf("write: %d", st)
	}
	seg := func(sector uint64, num, flags uint32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint64(b, sector)
		binary.LittleEndian.PutUint32(b[8:], num)
		binary.LittleEndian.PutUint32(b[12:], flags)
		return b
	}
	if st, _, _ := blkRequest(d, BlkTWriteZeroes, 0, seg(0, 16, 0), 0); st != BlkSOK {
		t.Fatalf("write zeroes: %d", st)
	}
	if st, _, _ := blkRequest(d, BlkTDiscard, 0, seg(64, 64, 0), 0); st != BlkSOK {
		t.Fatalf("discard: %d", st)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(file[:8192], make([]byte, 8192)) {
		t.Errorf("write zeroes left data behind")
	}
	if !bytes.Equal(file[8192:16384], ones[:8192]) {
		t.Errorf("write zeroes touched data outside its range")
	}
	if st, _, _ := blkRequest(d, BlkTDiscard, 0, seg(2040, 16, 0), 0); st != BlkSIOErr {
		t.Errorf("discard past the end: %d, want IOERR", st)
	}
	if st, _, _ := blkRequest(d, BlkTDiscard, 0, []byte{1, 2, 3}, 0); st != BlkSIOErr {
		t.Errorf("short discard segment: %d, want IOERR", st)
	}
}

func TestBlkReadOnly(t *testing.T) {
	path := tempDisk(t, 64<<10, "")
	os.WriteFile(path, bytes.Repeat([]byte{7}, 64<<10), 0o600)
	d, blk := startBlk(t, path, BlkConfig{ReadOnly: true})
	if blk.Features()&BlkFRO == 0 {
		t.Fatalf("read-only disk does not offer VIRTIO_BLK_F_RO")
	}
	if st, _, _ := blkRequest(d, BlkTOut, 0, make([]byte, 512), 0); st != BlkSIOErr {
		t.Fatalf("write to read-only disk: status %d, want IOERR", st)
	}
	if st, data, _ := blkRequest(d, BlkTIn, 0, nil, 512); st != BlkSOK || data[0] != 7 {
		t.Fatalf("read from read-only disk: status %d", st)
	}
	file, _ := os.ReadFile(path)
	if file[0] != 7 {
		t.Fatalf("read-only disk was modified")
	}
}

func TestBlkResetAndRestart(t *testing.T) {
	path := tempDisk(t, 64<<10, "")
	d, _ := startBlk(t, path, BlkConfig{})
	sector := bytes.Repeat([]byte("0123456789abcdef"), 32)
	if st, _, _ := blkRequest(d, BlkTOut, 1, sector, 0); st != BlkSOK {
		t.Fatalf("write: status %d", st)
	}
	d.write32(RegStatus, 0)
	if d.read32(RegStatus) != 0 {
		t.Fatalf("status not cleared by reset")
	}
	d.start(0, 64) // this time without EVENT_IDX
	if st, data, _ := blkRequest(d, BlkTIn, 1, nil, 512); st != BlkSOK || !bytes.Equal(data, sector) {
		t.Fatalf("read after reset: status %d", st)
	}
}

func BenchmarkBlkRead4K(b *testing.B) {
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = b.TempDir()
	} else {
		dir, _ = os.MkdirTemp(dir, "vsh-virtio-bench")
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := tempDisk(b, 64<<20, dir)
	d, _ := startBlk(b, path, BlkConfig{})
	q := d.queues[0]
	hdr := d.alloc(16, 16)
	data := d.alloc(4096, 4096)
	status := d.alloc(1, 1)
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sector := uint64(i%16384) * 8
		binary.LittleEndian.PutUint32(d.bytes(hdr, 4), BlkTIn)
		binary.LittleEndian.PutUint64(d.bytes(hdr+8, 8), sector)
		head := q.freeHead
		d.putDesc(0, head, hdr, 16, descFNext, (head+1)%q.size)
		d.putDesc(0, (head+1)%q.size, data, 4096, descFNext|descFWrite, (head+2)%q.size)
		d.putDesc(0, (head+2)%q.size, status, 1, descFWrite, 0)
		q.freeHead = (head + 3) % q.size
		d.publish(0, head)
		d.notify(0)
		d.waitUsed(0)
	}
}
