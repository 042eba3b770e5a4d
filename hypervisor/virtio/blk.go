package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// BlockBackend is the storage behind a virtio-blk device: a raw file, block
// device or qcow2 image.
type BlockBackend interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Size() uint64
	Discard(off, length int64) error     // errors.ErrUnsupported if the backend can't
	WriteZeroes(off, length int64) error // errors.ErrUnsupported if the backend can't
	Close() error
}

// virtio-blk feature bits.
const (
	BlkFSizeMax     = 1 << 1
	BlkFSegMax      = 1 << 2
	BlkFRO          = 1 << 5
	BlkFBlkSize     = 1 << 6
	BlkFFlush       = 1 << 9
	BlkFDiscard     = 1 << 13
	BlkFWriteZeroes = 1 << 14
)

// virtio-blk request types and status values.
const (
	BlkTIn          = 0
	BlkTOut         = 1
	BlkTFlush       = 4
	BlkTGetID       = 8
	BlkTDiscard     = 11
	BlkTWriteZeroes = 13

	BlkSOK     = 0
	BlkSIOErr  = 1
	BlkSUnsupp = 2
)

const (
	sectorSize   = 512
	blkHdrSize   = 16
	blkIDLen     = 20
	blkQueueSize = 256
	blkSegMax    = blkQueueSize - 2 // header and status take two descriptors
	blkSizeMax   = 1 << 20
	// blkMaxDiscardSectors bounds one discard/write-zeroes segment.
	blkMaxDiscardSectors = 1 << 22 // 2 GiB
	blkMaxDiscardSeg     = 32
	blkConfigSize        = 60
)

// BlkConfig configures a virtio-blk device.
type BlkConfig struct {
	Serial   string // GET_ID answer, truncated to 20 bytes
	ReadOnly bool
	Discard  bool // offer DISCARD (<driver discard='unmap'>)
}

// Blk is a virtio-blk device.
type Blk struct {
	backend BlockBackend
	cfg     BlkConfig
	config  [blkConfigSize]byte

	w      workers
	mu     sync.Mutex
	closed bool
}

// NewBlk returns a virtio-blk device serving backend.
func NewBlk(backend BlockBackend, cfg BlkConfig) *Blk {
	b := &Blk{backend: backend, cfg: cfg}
	c := b.config[:]
	binary.LittleEndian.PutUint64(c[0:], backend.Size()/sectorSize)
	binary.LittleEndian.PutUint32(c[8:], blkSizeMax)
	binary.LittleEndian.PutUint32(c[12:], blkSegMax)
	binary.LittleEndian.PutUint32(c[20:], sectorSize)
	binary.LittleEndian.PutUint32(c[36:], blkMaxDiscardSectors)
	binary.LittleEndian.PutUint32(c[40:], blkMaxDiscardSeg)
	binary.LittleEndian.PutUint32(c[44:], 1)
	binary.LittleEndian.PutUint32(c[48:], blkMaxDiscardSectors)
	binary.LittleEndian.PutUint32(c[52:], blkMaxDiscardSeg)
	return b
}

// DeviceID implements Device.
func (b *Blk) DeviceID() uint32 { return IDBlock }

// Features implements Device.
func (b *Blk) Features() uint64 {
	f := uint64(BlkFSizeMax | BlkFSegMax | BlkFBlkSize | BlkFFlush)
	if b.cfg.ReadOnly {
		return f | BlkFRO
	}
	f |= BlkFWriteZeroes
	if b.cfg.Discard {
		f |= BlkFDiscard
	}
	return f
}

// QueueMaxSizes implements Device.
func (b *Blk) QueueMaxSizes() []uint16 { return []uint16{blkQueueSize} }

// ReadConfig implements Device.
func (b *Blk) ReadConfig(offset uint64, data []byte) { readConfigBytes(b.config[:], offset, data) }

// WriteConfig implements Device; the block configuration is read-only.
func (b *Blk) WriteConfig(offset uint64, data []byte) {}

// Activate implements Device.
func (b *Blk) Activate(a Activation) error {
	q := a.Queues[0]
	if !q.Ready() {
		return fmt.Errorf("virtio-blk request queue not enabled")
	}
	b.w.start(func(stop <-chan struct{}) {
		serveQueue(stop, q, func() error { return b.process(q) })
	})
	return nil
}

// Reset implements Device.
func (b *Blk) Reset() { b.w.stopAll() }

// Close stops the device and closes the backend.
func (b *Blk) Close() error {
	b.w.stopAll()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return b.backend.Close()
}

// process serves every available request on q.
func (b *Blk) process(q *Queue) error {
	for {
		c, err := q.Pop()
		if err != nil {
			return err
		}
		if c == nil {
			return nil
		}
		written := b.Handle(c)
		if err := q.Push(c.Head, written); err != nil {
			return err
		}
		if err := q.Signal(); err != nil {
			return err
		}
	}
}

// Handle executes one request chain and writes its status byte; it returns
// the number of bytes written into the chain's writable buffers. A chain
// without room for a status byte gets nothing written.
func (b *Blk) Handle(c *Chain) uint32 {
	wlen := c.WritableLen()
	if wlen < 1 {
		return 0
	}
	data := sliceBufs(c.Writable, 0, wlen-1)
	status, n := b.execute(c, data)
	c.WriteAt([]byte{status}, wlen-1)
	return uint32(n) + 1
}

func (b *Blk) execute(c *Chain, in [][]byte) (status byte, written int) {
	var hdr [blkHdrSize]byte
	if c.ReadAt(hdr[:], 0) != blkHdrSize {
		return BlkSIOErr, 0
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	out := sliceBufs(c.Readable, blkHdrSize, c.ReadableLen()-blkHdrSize)
	switch typ {
	case BlkTIn:
		n := 0
		for _, b := range in {
			n += len(b)
		}
		off, ok := b.rangeOK(sector, uint64(n))
		if !ok {
			return BlkSIOErr, 0
		}
		for _, buf := range in {
			if _, err := b.backend.ReadAt(buf, off); err != nil {
				return BlkSIOErr, 0
			}
			off += int64(len(buf))
		}
		return BlkSOK, n
	case BlkTOut:
		if b.cfg.ReadOnly {
			return BlkSIOErr, 0
		}
		n := 0
		for _, buf := range out {
			n += len(buf)
		}
		off, ok := b.rangeOK(sector, uint64(n))
		if !ok {
			return BlkSIOErr, 0
		}
		for _, buf := range out {
			if _, err := b.backend.WriteAt(buf, off); err != nil {
				return BlkSIOErr, 0
			}
			off += int64(len(buf))
		}
		return BlkSOK, 0
	case BlkTFlush:
		if b.cfg.ReadOnly {
			return BlkSOK, 0
		}
		if err := b.backend.Flush(); err != nil {
			return BlkSIOErr, 0
		}
		return BlkSOK, 0
	case BlkTGetID:
		var id [blkIDLen]byte
		copy(id[:], b.cfg.Serial)
		return BlkSOK, scatter(in, id[:], 0)
	case BlkTDiscard, BlkTWriteZeroes:
		if typ == BlkTDiscard && (!b.cfg.Discard || b.cfg.ReadOnly) {
			return BlkSUnsupp, 0
		}
		if b.cfg.ReadOnly {
			return BlkSIOErr, 0
		}
		return b.discardOrZero(typ, c, out), 0
	}
	return BlkSUnsupp, 0
}

// rangeOK converts a sector and byte count to a byte offset if the range
// lies inside the disk.
func (b *Blk) rangeOK(sector, n uint64) (int64, bool) {
	size := b.backend.Size()
	if sector > size/sectorSize {
		return 0, false
	}
	off := sector * sectorSize
	if n > size-off {
		return 0, false
	}
	return int64(off), true
}

func (b *Blk) discardOrZero(typ uint32, c *Chain, segs [][]byte) byte {
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	if total == 0 || total%16 != 0 || total/16 > blkMaxDiscardSeg {
		return BlkSIOErr
	}
	raw := make([]byte, total)
	gather(segs, raw, 0)
	for i := 0; i < total; i += 16 {
		sector := binary.LittleEndian.Uint64(raw[i:])
		num := binary.LittleEndian.Uint32(raw[i+8:])
		flags := binary.LittleEndian.Uint32(raw[i+12:])
		if num > blkMaxDiscardSectors || flags&^1 != 0 || (typ == BlkTDiscard && flags != 0) {
			return BlkSUnsupp
		}
		off, ok := b.rangeOK(sector, uint64(num)*sectorSize)
		if !ok {
			return BlkSIOErr
		}
		length := int64(num) * sectorSize
		if typ == BlkTDiscard {
			// Discarded contents are unspecified, so a backend that cannot
			// discard may simply keep the data.
			if err := b.backend.Discard(off, length); err != nil && !errors.Is(err, errors.ErrUnsupported) {
				return BlkSIOErr
			}
			continue
		}
		err := b.backend.WriteZeroes(off, length)
		if errors.Is(err, errors.ErrUnsupported) {
			err = writeZeroBlocks(b.backend, off, length)
		}
		if err != nil {
			return BlkSIOErr
		}
	}
	return BlkSOK
}

func writeZeroBlocks(be BlockBackend, off, length int64) error {
	zero := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(zero)))
		if _, err := be.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// RawFile is a BlockBackend over a plain file or block device, without
// discard support beyond what the OS offers through fallocate.
type RawFile struct {
	f    *os.File
	size uint64
}

// OpenRawFile opens path as a raw disk image.
func OpenRawFile(path string, readOnly bool) (*RawFile, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	size, err := f.Seek(0, 2)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("size of disk image %s: %w", path, err)
	}
	return &RawFile{f: f, size: uint64(size)}, nil
}

// ReadAt implements BlockBackend.
func (r *RawFile) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// WriteAt implements BlockBackend.
func (r *RawFile) WriteAt(p []byte, off int64) (int, error) { return r.f.WriteAt(p, off) }

// Flush implements BlockBackend.
func (r *RawFile) Flush() error { return r.f.Sync() }

// Size implements BlockBackend.
func (r *RawFile) Size() uint64 { return r.size }

// Discard implements BlockBackend by punching a hole.
func (r *RawFile) Discard(off, length int64) error { return punchHole(r.f, off, length) }

// WriteZeroes implements BlockBackend with a hole punch, which reads back
// as zeroes.
func (r *RawFile) WriteZeroes(off, length int64) error { return punchHole(r.f, off, length) }

// Close implements BlockBackend.
func (r *RawFile) Close() error { return r.f.Close() }

func punchHole(f *os.File, off, length int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return errors.ErrUnsupported
	}
	if err != nil {
		return fmt.Errorf("punch hole at %d+%d: %w", off, length, err)
	}
	return nil
}
