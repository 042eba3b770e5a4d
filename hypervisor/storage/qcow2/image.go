package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Entry bits shared by L1 and L2 tables.
const (
	flagCopied     = uint64(1) << 63
	flagCompressed = uint64(1) << 62
	flagZero       = uint64(1) << 0
	offsetMask     = uint64(0x00fffffffffffe00)
	reftableMask   = ^uint64(0x1ff)
)

const (
	maxChainDepth     = 16
	defaultCacheBytes = 32 << 20
	maxPendingFrees   = 4096
)

// File is the storage an Image lives in. *os.File satisfies it; callers may
// pass a wrapper (for example one that does O_DIRECT with aligned buffers).
type File interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Stat() (os.FileInfo, error)
	Close() error
}

// Options tune Open.
type Options struct {
	ReadOnly bool
	// WriteThrough makes every write durable before it returns (libvirt's
	// cache='writethrough' and 'directsync').
	WriteThrough bool
	// LockBacking takes a shared OFD lock on every backing file so that
	// nobody can open them read-write while this image uses them.
	LockBacking bool
	// CacheBytes bounds the L2 table and refcount block caches together;
	// 0 means 32 MiB.
	CacheBytes int
}

// backing is the read side of a backing file (raw or qcow2).
type backing interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() uint64
	Close() error
}

// Image is an open qcow2 image. It is safe for concurrent use; all I/O is
// serialized by one mutex. It implements the virtio-blk BlockBackend
// interface (ReadAt, WriteAt, Flush, Size, Discard, WriteZeroes, Close).
type Image struct {
	mu   sync.Mutex
	f    File
	path string
	opts Options
	hdr  Header

	clusterBits uint32
	clusterSize uint64
	l2Entries   uint64
	refOrder    uint32
	refsPerBlk  uint64

	l1      []uint64
	l1Dirty map[uint64]bool

	reftable []uint64
	l2Cache  *tableCache
	rbCache  *tableCache

	nextFree uint64 // first cluster offset past everything allocated
	// deviceLimit is the usable size of a block device holding the image
	// (0 for regular files, which grow).
	deviceLimit uint64
	freeHint    uint64 // allocation scan starts here
	pending     []uint64

	backing     backing
	backingPath string
	backingFmt  string

	cowBuf []byte
	closed bool
	err    error // sticky metadata error: the image went read-only
}

// Open opens the qcow2 image at path with its backing chain.
func Open(path string, readOnly bool) (*Image, error) {
	return OpenWith(path, Options{ReadOnly: readOnly})
}

// OpenWith opens the qcow2 image at path with options.
func OpenWith(path string, opts Options) (*Image, error) {
	return openChain(path, opts, 0, map[[2]uint64]bool{})
}

func openChain(path string, opts Options, depth int, seen map[[2]uint64]bool) (*Image, error) {
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	img, err := openFile(f, path, opts, depth, seen)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

// OpenFile opens an image from an already open file. path names the image
// in errors and anchors relative backing file names. On success the Image
// owns f and closes it in Close.
func OpenFile(f File, path string, opts Options) (*Image, error) {
	return openFile(f, path, opts, 0, map[[2]uint64]bool{})
}

func openFile(f File, path string, opts Options, depth int, seen map[[2]uint64]bool) (*Image, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("qcow2: stat %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
		if seen[key] {
			return nil, fmt.Errorf("qcow2: backing chain of %s loops", path)
		}
		seen[key] = true
	}
	fileSize := uint64(fi.Size())
	if fi.Mode()&os.ModeDevice != 0 {
		if s, err := deviceSize(f); err == nil {
			fileSize = s
		}
	}
	hdr, err := readHeader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	img := &Image{
		f:           f,
		path:        path,
		opts:        opts,
		hdr:         *hdr,
		clusterBits: hdr.ClusterBits,
		clusterSize: hdr.ClusterSize(),
		l2Entries:   hdr.l2Entries(),
		refOrder:    hdr.RefcountOrder,
		l1Dirty:     map[uint64]bool{},
	}
	img.refsPerBlk = img.clusterSize * 8 >> hdr.RefcountOrder
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = defaultCacheBytes
	}
	tables := cacheBytes / int(img.clusterSize)
	img.l2Cache = newTableCache(tables * 3 / 4)
	img.rbCache = newTableCache(tables / 4)
	if !opts.ReadOnly && hdr.NbSnapshots > 0 {
		return nil, fmt.Errorf("qcow2: %s has internal snapshots, which vsh can only open read-only", path)
	}

	// L1 and refcount tables must lie inside the file; this bounds the
	// memory a hostile header can make us allocate.
	l1Bytes := uint64(hdr.L1Size) * 8
	if hdr.L1TableOffset+l1Bytes > fileSize || hdr.L1TableOffset+l1Bytes < hdr.L1TableOffset {
		return nil, fmt.Errorf("qcow2: %s: L1 table lies beyond the end of the file", path)
	}
	rtBytes := uint64(hdr.RefcountTableClusters) * img.clusterSize
	if hdr.RefcountTableOffset+rtBytes > fileSize {
		return nil, fmt.Errorf("qcow2: %s: refcount table lies beyond the end of the file", path)
	}
	if img.l1, err = readTable(f, hdr.L1TableOffset, l1Bytes); err != nil {
		return nil, fmt.Errorf("qcow2: %s: read L1 table: %w", path, err)
	}
	if img.reftable, err = readTable(f, hdr.RefcountTableOffset, rtBytes); err != nil {
		return nil, fmt.Errorf("qcow2: %s: read refcount table: %w", path, err)
	}
	img.nextFree = alignUp(fileSize, img.clusterSize)
	if fi.Mode()&os.ModeDevice != 0 && !opts.ReadOnly {
		// A block device is as large as it is, not as the image: new
		// clusters go after the highest one in use.
		if img.nextFree, err = img.highestInUse(); err != nil {
			return nil, err
		}
		img.deviceLimit = alignDown(fileSize, img.clusterSize)
	}

	if !opts.ReadOnly && hdr.Version >= 3 && hdr.AutoclearFeatures != 0 {
		// We maintain no autoclear feature (bitmaps, raw data file), so the
		// spec says to clear them all when we open for writing.
		var b [8]byte
		if _, err := f.WriteAt(b[:], 88); err != nil {
			return nil, fmt.Errorf("qcow2: %s: clear autoclear features: %w", path, err)
		}
		img.hdr.AutoclearFeatures = 0
	}

	if hdr.BackingFile != "" {
		if depth+1 >= maxChainDepth {
			return nil, fmt.Errorf("qcow2: backing chain of %s is deeper than %d", path, maxChainDepth)
		}
		bp := resolveBacking(path, hdr.BackingFile)
		b, bfmt, err := openBacking(bp, hdr.BackingFormat, opts, depth+1, seen)
		if err != nil {
			return nil, fmt.Errorf("qcow2: %s: open backing file: %w", path, err)
		}
		img.backing, img.backingPath, img.backingFmt = b, bp, bfmt
	}
	return img, nil
}

// resolveBacking makes a relative backing file name relative to the
// directory of the image that names it.
func resolveBacking(imagePath, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(filepath.Dir(imagePath), name)
}

func openBacking(path, format string, opts Options, depth int, seen map[[2]uint64]bool) (backing, string, error) {
	if format == "" {
		probed, err := ProbeFormat(path)
		if err != nil {
			return nil, "", err
		}
		format = probed
	}
	bopts := Options{ReadOnly: true, LockBacking: opts.LockBacking, CacheBytes: opts.CacheBytes}
	switch format {
	case "qcow2":
		img, err := openChain(path, bopts, depth, seen)
		if err != nil {
			return nil, "", err
		}
		if opts.LockBacking {
			if err := lockShared(img.f, path); err != nil {
				img.Close()
				return nil, "", err
			}
		}
		return img, format, nil
	case "raw":
		f, err := os.Open(path)
		if err != nil {
			return nil, "", err
		}
		if opts.LockBacking {
			if err := lockShared(f, path); err != nil {
				f.Close()
				return nil, "", err
			}
		}
		r := &rawBacking{f: f}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, "", err
		}
		r.size = uint64(fi.Size())
		if fi.Mode()&os.ModeDevice != 0 {
			if s, err := deviceSize(f); err == nil {
				r.size = s
			}
		}
		return r, format, nil
	default:
		return nil, "", fmt.Errorf("backing format %q is not supported (raw or qcow2)", format)
	}
}

func lockShared(f File, path string) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(fd.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("backing file %s is in use read-write by another domain", path)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return nil
}

// ProbeFormat returns "qcow2" when the file at path starts with the qcow2
// magic and "raw" otherwise.
func ProbeFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b [4]byte
	n, err := f.ReadAt(b[:], 0)
	if n == 4 && binary.BigEndian.Uint32(b[:]) == Magic {
		return "qcow2", nil
	}
	if err != nil && err != io.EOF {
		return "", err
	}
	return "raw", nil
}

type rawBacking struct {
	f    *os.File
	size uint64
}

func (r *rawBacking) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *rawBacking) Size() uint64                            { return r.size }
func (r *rawBacking) Close() error                            { return r.f.Close() }

func deviceSize(f File) (uint64, error) {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return 0, errors.New("no file descriptor")
	}
	var size uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd.Fd(), unix.BLKGETSIZE64, uintptrOf(&size))
	if errno != 0 {
		return 0, errno
	}
	return size, nil
}

// readHeader reads the first cluster of f and parses it.
func readHeader(f io.ReaderAt) (*Header, error) {
	buf := make([]byte, 1<<minClusterBits)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	buf = buf[:n]
	if n >= 24 && binary.BigEndian.Uint32(buf) == Magic {
		bits := binary.BigEndian.Uint32(buf[20:])
		if bits > minClusterBits && bits <= maxClusterBits {
			full := make([]byte, 1<<bits)
			n, err := f.ReadAt(full, 0)
			if err != nil && err != io.EOF {
				return nil, err
			}
			buf = full[:n]
		}
	}
	return ParseHeader(buf)
}

// readTable reads n bytes at off and decodes them as big-endian uint64s.
func readTable(f io.ReaderAt, off, n uint64) ([]uint64, error) {
	buf := make([]byte, n)
	if err := readFull(f, buf, off, false); err != nil {
		return nil, err
	}
	t := make([]uint64, n/8)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return t, nil
}

// readFull reads len(p) bytes at off. Past the end of the file it returns
// zeros when zeroFill is set (the data area of a sparse image), and an error
// otherwise (metadata must exist).
func readFull(f io.ReaderAt, p []byte, off uint64, zeroFill bool) error {
	if off > 1<<62 {
		return fmt.Errorf("offset %#x out of range", off)
	}
	n, err := f.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == io.EOF || err == nil {
		if !zeroFill {
			return fmt.Errorf("offset %#x lies beyond the end of the file", off+uint64(n))
		}
		clear(p[n:])
		return nil
	}
	return err
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func alignDown(v, a uint64) uint64 { return v &^ (a - 1) }

// highestInUse returns the offset just past the last cluster with a
// non-zero refcount.
func (img *Image) highestInUse() (uint64, error) {
	for i := len(img.reftable) - 1; i >= 0; i-- {
		rb := img.reftable[i] & reftableMask
		if rb == 0 {
			continue
		}
		t, err := img.loadTable(img.rbCache, rb, false)
		if err != nil {
			return 0, err
		}
		for j := img.refsPerBlk; j > 0; j-- {
			if getRefcount(t.buf, j-1, img.refOrder) != 0 {
				return (uint64(i)*img.refsPerBlk + j) << img.clusterBits, nil
			}
		}
	}
	return img.clusterSize, nil
}

// Header returns a copy of the image header.
func (img *Image) Header() Header {
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.hdr
}

// Size returns the virtual disk size in bytes.
func (img *Image) Size() uint64 {
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.hdr.Size
}

// Path returns the image's file name.
func (img *Image) Path() string { return img.path }

// BackingPath returns the resolved path of the backing file, if any.
func (img *Image) BackingPath() string { return img.backingPath }

// BackingFormat returns the backing file's format ("raw" or "qcow2").
func (img *Image) BackingFormat() string { return img.backingFmt }

func (img *Image) usable(write bool) error {
	if img.closed {
		return errors.New("qcow2: image is closed")
	}
	if write && img.opts.ReadOnly {
		return fmt.Errorf("qcow2: %s is open read-only", img.path)
	}
	if write && img.err != nil {
		return fmt.Errorf("qcow2: %s: earlier metadata error: %w", img.path, img.err)
	}
	return nil
}

// ReadAt reads virtual disk bytes. Reads past the virtual size return
// io.EOF after the bytes that exist.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("qcow2: negative offset")
	}
	size := img.hdr.Size
	if uint64(off) >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := p
	var eof error
	if uint64(off)+uint64(len(p)) > size {
		want = p[:size-uint64(off)]
		eof = io.EOF
	}
	done := 0
	for done < len(want) {
		pos := uint64(off) + uint64(done)
		in := pos & (img.clusterSize - 1)
		n := min(img.clusterSize-in, uint64(len(want)-done))
		if err := img.readChunk(want[done:done+int(n)], pos); err != nil {
			return done, err
		}
		done += int(n)
	}
	return done, eof
}

// readChunk reads bytes that lie within one cluster.
func (img *Image) readChunk(p []byte, pos uint64) error {
	entry, err := img.lookup(pos)
	if err != nil {
		return err
	}
	in := pos & (img.clusterSize - 1)
	switch {
	case entry&flagCompressed != 0:
		return fmt.Errorf("qcow2: %s: compressed clusters are not supported (guest offset %#x)", img.path, pos)
	case entry&flagZero != 0:
		clear(p)
		return nil
	case entry&offsetMask == 0:
		return img.readBacking(p, pos)
	default:
		host := entry & offsetMask
		if host&(img.clusterSize-1) != 0 {
			return fmt.Errorf("qcow2: %s: corrupt L2 entry %#x (unaligned cluster)", img.path, entry)
		}
		return readFull(img.f, p, host+in, true)
	}
}

func (img *Image) readBacking(p []byte, pos uint64) error {
	if img.backing == nil {
		clear(p)
		return nil
	}
	bsize := img.backing.Size()
	if pos >= bsize {
		clear(p)
		return nil
	}
	n := min(uint64(len(p)), bsize-pos)
	m, err := img.backing.ReadAt(p[:n], int64(pos))
	if err != nil && !(err == io.EOF && uint64(m) == n) {
		if err != io.EOF {
			return fmt.Errorf("qcow2: read backing file %s: %w", img.backingPath, err)
		}
	}
	clear(p[m:])
	return nil
}

// lookup returns the L2 entry for guest offset pos (0 when unallocated).
func (img *Image) lookup(pos uint64) (uint64, error) {
	vc := pos >> img.clusterBits
	l1i := vc / img.l2Entries
	if l1i >= uint64(len(img.l1)) {
		return 0, nil
	}
	l2off := img.l1[l1i] & offsetMask
	if l2off == 0 {
		return 0, nil
	}
	t, err := img.loadTable(img.l2Cache, l2off, true)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(t.buf[(vc%img.l2Entries)*8:]), nil
}

// loadTable returns the metadata cluster at off from cache or disk.
func (img *Image) loadTable(c *tableCache, off uint64, isL2 bool) (*table, error) {
	if off == 0 || off&(img.clusterSize-1) != 0 {
		return nil, fmt.Errorf("qcow2: %s: corrupt metadata: table offset %#x is not cluster aligned", img.path, off)
	}
	if t := c.get(off); t != nil {
		return t, nil
	}
	buf := make([]byte, img.clusterSize)
	if err := readFull(img.f, buf, off, false); err != nil {
		what := "refcount block"
		if isL2 {
			what = "L2 table"
		}
		return nil, fmt.Errorf("qcow2: %s: read %s: %w", img.path, what, err)
	}
	t := &table{off: off, buf: buf}
	if err := img.makeRoom(c, isL2); err != nil {
		return nil, err
	}
	c.add(t)
	return t, nil
}

// newTable inserts a zeroed, dirty table for a freshly allocated cluster.
func (img *Image) newTable(c *tableCache, off uint64, isL2 bool) (*table, error) {
	if err := img.makeRoom(c, isL2); err != nil {
		return nil, err
	}
	if old := c.get(off); old != nil {
		c.remove(old)
	}
	t := &table{off: off, buf: make([]byte, img.clusterSize), dirty: true}
	c.add(t)
	return t, nil
}

// makeRoom evicts the least recently used table when c is full. A dirty L2
// table may only reach the disk after the data and refcounts it points to.
func (img *Image) makeRoom(c *tableCache, isL2 bool) error {
	v := c.victim()
	if v == nil {
		return nil
	}
	if v.dirty {
		if isL2 {
			if err := img.writeTables(img.rbCache); err != nil {
				return err
			}
			if err := img.f.Sync(); err != nil {
				return img.fail(err)
			}
		}
		if _, err := img.f.WriteAt(v.buf, int64(v.off)); err != nil {
			return img.fail(err)
		}
		v.dirty = false
	}
	c.remove(v)
	return nil
}

func (img *Image) fail(err error) error {
	if img.err == nil {
		img.err = err
	}
	return fmt.Errorf("qcow2: %s: metadata write: %w", img.path, err)
}

func (img *Image) writeTables(c *tableCache) error {
	for _, t := range c.dirtyTables() {
		if _, err := img.f.WriteAt(t.buf, int64(t.off)); err != nil {
			return img.fail(err)
		}
		t.dirty = false
	}
	return nil
}

// WriteAt writes virtual disk bytes, allocating clusters as needed. Writes
// past the virtual size fail.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(true); err != nil {
		return 0, err
	}
	if off < 0 || uint64(off)+uint64(len(p)) > img.hdr.Size {
		return 0, fmt.Errorf("qcow2: write of %d bytes at %d is beyond the virtual size %d", len(p), off, img.hdr.Size)
	}
	done := 0
	for done < len(p) {
		pos := uint64(off) + uint64(done)
		in := pos & (img.clusterSize - 1)
		n := min(img.clusterSize-in, uint64(len(p)-done))
		if err := img.writeChunk(p[done:done+int(n)], pos); err != nil {
			return done, err
		}
		done += int(n)
	}
	if img.opts.WriteThrough {
		if err := img.flushLocked(); err != nil {
			return done, err
		}
	}
	return done, nil
}

// l2ForWrite returns the L2 table covering pos, allocating it if needed.
func (img *Image) l2ForWrite(pos uint64) (*table, uint64, error) {
	vc := pos >> img.clusterBits
	l1i := vc / img.l2Entries
	if l1i >= uint64(len(img.l1)) {
		return nil, 0, fmt.Errorf("qcow2: %s: offset %#x is beyond the L1 table", img.path, pos)
	}
	e := img.l1[l1i]
	l2off := e & offsetMask
	var t *table
	var err error
	if l2off == 0 {
		if l2off, err = img.allocCluster(); err != nil {
			return nil, 0, err
		}
		if t, err = img.newTable(img.l2Cache, l2off, true); err != nil {
			return nil, 0, err
		}
		img.l1[l1i] = l2off | flagCopied
		img.l1Dirty[l1i] = true
	} else {
		if e&flagCopied == 0 {
			rc, err := img.refcount(l2off)
			if err != nil {
				return nil, 0, err
			}
			if rc != 1 {
				return nil, 0, fmt.Errorf("qcow2: %s: L2 table at %#x is shared (refcount %d); writing to images with snapshots is not supported", img.path, l2off, rc)
			}
			img.l1[l1i] = l2off | flagCopied
			img.l1Dirty[l1i] = true
		}
		if t, err = img.loadTable(img.l2Cache, l2off, true); err != nil {
			return nil, 0, err
		}
	}
	return t, (vc % img.l2Entries) * 8, nil
}

// writeChunk writes bytes that lie within one cluster.
func (img *Image) writeChunk(p []byte, pos uint64) error {
	t, idx, err := img.l2ForWrite(pos)
	if err != nil {
		return err
	}
	entry := binary.BigEndian.Uint64(t.buf[idx:])
	in := pos & (img.clusterSize - 1)
	host := entry & offsetMask
	if entry&flagCompressed != 0 {
		return fmt.Errorf("qcow2: %s: writing to compressed clusters is not supported (guest offset %#x)", img.path, pos)
	}
	if host != 0 && (host&(img.clusterSize-1) != 0 || host >= img.nextFree) {
		// Writing there would extend the file to wherever a corrupt
		// entry points.
		return fmt.Errorf("qcow2: %s: corrupt L2 entry %#x (misaligned or beyond the end of the file)", img.path, entry)
	}
	owned := entry&flagCopied != 0
	if host != 0 && !owned {
		rc, err := img.refcount(host)
		if err != nil {
			return err
		}
		owned = rc == 1
	}
	if host != 0 && owned && entry&flagZero == 0 {
		// Allocated and ours: overwrite in place.
		if _, err := img.f.WriteAt(p, int64(host+in)); err != nil {
			return fmt.Errorf("qcow2: %s: write: %w", img.path, err)
		}
		if entry&flagCopied == 0 {
			binary.BigEndian.PutUint64(t.buf[idx:], host|flagCopied)
			t.dirty = true
		}
		return nil
	}

	// The cluster needs new contents.
	newHost, fresh := host, false
	if host == 0 || !owned {
		if newHost, fresh, err = img.allocClusterFresh(); err != nil {
			return err
		}
	}
	base := pos - in
	partial := uint64(len(p)) != img.clusterSize
	zeroSource := entry&flagZero != 0 ||
		host == 0 && (img.backing == nil || base >= img.backing.Size())
	switch {
	case !partial:
		if _, err := img.f.WriteAt(p, int64(newHost)); err != nil {
			return fmt.Errorf("qcow2: %s: write: %w", img.path, err)
		}
	case fresh && zeroSource && img.fallocateCluster(newHost):
		// The rest of a fresh cluster already reads as zeros.
		if _, err := img.f.WriteAt(p, int64(newHost+in)); err != nil {
			return fmt.Errorf("qcow2: %s: write: %w", img.path, err)
		}
	default:
		// Copy-on-write: build the whole cluster from its old source.
		if img.cowBuf == nil {
			img.cowBuf = make([]byte, img.clusterSize)
		}
		data := img.cowBuf
		switch {
		case entry&flagZero != 0:
			clear(data)
		case host != 0:
			if err := readFull(img.f, data, host, true); err != nil {
				return fmt.Errorf("qcow2: %s: copy-on-write read: %w", img.path, err)
			}
		default:
			if err := img.readBacking(data, base); err != nil {
				return err
			}
			if base+img.clusterSize > img.hdr.Size {
				clear(data[img.hdr.Size-base:])
			}
		}
		copy(data[in:], p)
		if _, err := img.f.WriteAt(data, int64(newHost)); err != nil {
			return fmt.Errorf("qcow2: %s: write: %w", img.path, err)
		}
	}
	// Refetch: allocation may have evicted and reloaded the table.
	if t, idx, err = img.l2ForWrite(pos); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(t.buf[idx:], newHost|flagCopied)
	t.dirty = true
	if host != 0 && newHost != host {
		return img.deferFree(host)
	}
	return nil
}

// Flush makes every completed write durable: data first, then refcounts,
// then the L2 and L1 tables that reference them, then deferred frees.
func (img *Image) Flush() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(false); err != nil {
		return err
	}
	return img.flushLocked()
}

func (img *Image) flushLocked() error {
	if img.opts.ReadOnly {
		return nil
	}
	if img.err != nil {
		return fmt.Errorf("qcow2: %s: earlier metadata error: %w", img.path, img.err)
	}
	if err := img.writeTables(img.rbCache); err != nil {
		return err
	}
	if len(img.l2Cache.dirtyTables()) > 0 || len(img.l1Dirty) > 0 {
		if err := img.f.Sync(); err != nil {
			return img.fail(err)
		}
		if err := img.writeTables(img.l2Cache); err != nil {
			return err
		}
		if err := img.writeL1(); err != nil {
			return err
		}
	}
	if err := img.f.Sync(); err != nil {
		return img.fail(err)
	}
	if len(img.pending) == 0 {
		return nil
	}
	// Nothing references the pending clusters on disk any more, so their
	// refcounts can drop now.
	pending := img.pending
	img.pending = nil
	for _, off := range pending {
		if err := img.decref(off); err != nil {
			return err
		}
	}
	if err := img.writeTables(img.rbCache); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return img.fail(err)
	}
	return nil
}

func (img *Image) writeL1() error {
	var b [8]byte
	for i := range img.l1Dirty {
		binary.BigEndian.PutUint64(b[:], img.l1[i])
		if _, err := img.f.WriteAt(b[:], int64(img.hdr.L1TableOffset+i*8)); err != nil {
			return img.fail(err)
		}
		delete(img.l1Dirty, i)
	}
	return nil
}

// Close flushes and closes the image and its backing chain.
func (img *Image) Close() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.closed {
		return nil
	}
	err := img.flushLocked()
	img.closed = true
	if cerr := img.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if img.backing != nil {
		if cerr := img.backing.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	return err
}

// Discard drops whole clusters in [off, off+length): they read back as
// zeros (or, for version 2 images with a backing file, keep their data —
// discard is advisory). Partial clusters are left alone.
func (img *Image) Discard(off, length int64) error {
	return img.clearRange(off, length, false)
}

// WriteZeroes makes [off, off+length) read as zeros, using unallocated or
// zero-flagged clusters for whole clusters and plain writes for the rest.
func (img *Image) WriteZeroes(off, length int64) error {
	return img.clearRange(off, length, true)
}

func (img *Image) clearRange(off, length int64, zero bool) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(true); err != nil {
		return err
	}
	if off < 0 || length < 0 || uint64(off)+uint64(length) > img.hdr.Size {
		return fmt.Errorf("qcow2: range %d+%d is beyond the virtual size %d", off, length, img.hdr.Size)
	}
	end := uint64(off) + uint64(length)
	var zeros []byte
	for pos := uint64(off); pos < end; {
		in := pos & (img.clusterSize - 1)
		n := min(img.clusterSize-in, end-pos)
		full := in == 0 && (n == img.clusterSize || pos+n == img.hdr.Size)
		var err error
		switch {
		case full:
			err = img.clearCluster(pos, zero)
		case zero:
			if zeros == nil {
				zeros = make([]byte, img.clusterSize)
			}
			err = img.writeChunk(zeros[:n], pos)
		}
		if err != nil {
			return err
		}
		pos += n
	}
	if img.opts.WriteThrough {
		return img.flushLocked()
	}
	return nil
}

// clearCluster drops one whole cluster.
func (img *Image) clearCluster(pos uint64, zero bool) error {
	target := uint64(0)
	if img.backing != nil {
		if img.hdr.Version < 3 {
			if !zero {
				return nil
			}
			return img.writeChunk(make([]byte, img.clusterSize)[:min(img.clusterSize, img.hdr.Size-pos)], pos)
		}
		target = flagZero
	}
	vc := pos >> img.clusterBits
	if l1i := vc / img.l2Entries; target == 0 && (l1i >= uint64(len(img.l1)) || img.l1[l1i]&offsetMask == 0) {
		return nil
	}
	t, idx, err := img.l2ForWrite(pos)
	if err != nil {
		return err
	}
	entry := binary.BigEndian.Uint64(t.buf[idx:])
	if entry == target {
		return nil
	}
	if entry&flagCompressed != 0 {
		return fmt.Errorf("qcow2: %s: discarding compressed clusters is not supported (guest offset %#x)", img.path, pos)
	}
	binary.BigEndian.PutUint64(t.buf[idx:], target)
	t.dirty = true
	if host := entry & offsetMask; host != 0 {
		return img.deferFree(host)
	}
	return nil
}

// deferFree queues a cluster whose reference was dropped in a cached table;
// its refcount drops after the table reaches the disk.
func (img *Image) deferFree(off uint64) error {
	img.pending = append(img.pending, off)
	if len(img.pending) >= maxPendingFrees {
		return img.flushLocked()
	}
	return nil
}
