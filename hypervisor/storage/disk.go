// Package storage provides vsh's disk backends and libvirt-style storage
// pools and volumes, with plain Go types (no XML).
//
// OpenDisk opens a raw file, block device or qcow2 image as a Disk, the
// backend that virtio-blk drives. Pools (dir, fs, netfs) and volumes (raw
// and qcow2 files) are managed by the functions in pool.go and volume.go.
package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/storage/qcow2"
)

// Disk is an open disk image. It is the virtio-blk BlockBackend: offsets
// and sizes are guest-visible bytes. Discard and WriteZeroes return an
// error wrapping errors.ErrUnsupported when the backend cannot do them.
type Disk interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Size() uint64
	Discard(off, length int64) error
	WriteZeroes(off, length int64) error
	Close() error
}

var (
	_ Disk = (*qcow2.Image)(nil)
	_ Disk = (*rawDisk)(nil)
)

// cacheMode is a parsed libvirt <driver cache=...> value.
type cacheMode struct {
	direct       bool // O_DIRECT
	writeThrough bool // durable before a write completes
	ignoreFlush  bool // cache='unsafe'
}

func parseCache(cache string) (cacheMode, error) {
	switch cache {
	case "", "default", "writeback":
		return cacheMode{}, nil
	case "none":
		return cacheMode{direct: true}, nil
	case "directsync":
		return cacheMode{direct: true, writeThrough: true}, nil
	case "writethrough":
		return cacheMode{writeThrough: true}, nil
	case "unsafe":
		return cacheMode{ignoreFlush: true}, nil
	}
	return cacheMode{}, fmt.Errorf("unknown disk cache mode %q (none, writethrough, writeback, directsync, unsafe)", cache)
}

// OpenDisk opens the disk image at path. format is "raw", "qcow2" or ""
// to probe it from the file's first bytes (a probed qcow2 image may not
// name a backing file: a guest could have written that header). cache is a libvirt cache mode:
// "none" and "directsync" use O_DIRECT (with aligned bounce buffers for
// unaligned requests), "writethrough" and "directsync" make each write
// durable before it completes, "unsafe" ignores flushes, and "writeback",
// "default" or "" use the host page cache with explicit flushes.
//
// The image is locked with an OFD lock: exclusive for read-write, shared
// for read-only, so a second domain cannot open it read-write. A qcow2
// image's backing files are locked shared.
func OpenDisk(path, format string, readOnly bool, cache string) (Disk, error) {
	mode, err := parseCache(cache)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	probed := format == ""
	if probed {
		if format, err = qcow2.ProbeFormat(path); err != nil {
			return nil, fmt.Errorf("disk %s: %w", path, err)
		}
	}
	if format != "raw" && format != "qcow2" {
		return nil, fmt.Errorf("disk %s: format %q is not supported (raw or qcow2)", path, format)
	}
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	if mode.direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		if mode.direct && errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("disk %s: cache mode %q needs O_DIRECT, which this file system does not support", path, cache)
		}
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	if err := lockFile(f, path, readOnly); err != nil {
		f.Close()
		return nil, err
	}
	var file qcow2.File = f
	if mode.direct {
		file = &directFile{File: f}
	}
	if format == "qcow2" {
		if probed {
			// A guest can write a qcow2 header naming any host file as
			// its backing file into a raw disk; probing must not follow it.
			if h, err := readQcow2Header(path); err == nil && h.BackingFile != "" {
				f.Close()
				return nil, fmt.Errorf("disk %s: probed qcow2 image names backing file %q; set the disk format explicitly", path, h.BackingFile)
			}
		}
		img, err := qcow2.OpenFile(file, path, qcow2.Options{ReadOnly: readOnly, WriteThrough: mode.writeThrough, LockBacking: true})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("disk %s: %w", path, err)
		}
		if mode.ignoreFlush {
			return unsafeDisk{img}, nil
		}
		return img, nil
	}
	d := &rawDisk{f: f, io: file, path: path, readOnly: readOnly, mode: mode}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	d.size = uint64(fi.Size())
	if fi.Mode()&os.ModeDevice != 0 {
		d.block = true
		if d.size, err = blockDeviceSize(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("disk %s: size of block device: %w", path, err)
		}
	}
	return d, nil
}

// unsafeDisk ignores guest flushes (cache='unsafe'); Close still flushes.
type unsafeDisk struct{ *qcow2.Image }

func (unsafeDisk) Flush() error { return nil }

// lockFile takes an OFD lock over the whole file; it is released when the
// file is closed.
func lockFile(f *os.File, path string, shared bool) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if shared {
		lk.Type = unix.F_RDLCK
	}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("disk %s is in use by another domain", path)
		}
		return fmt.Errorf("lock disk %s: %w", path, err)
	}
	return nil
}

func blockDeviceSize(f *os.File) (uint64, error) {
	var size uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
	if errno != 0 {
		return 0, errno
	}
	return size, nil
}

// rawDisk is a raw file or block device.
type rawDisk struct {
	f        *os.File
	io       qcow2.File // f, or its O_DIRECT wrapper
	path     string
	size     uint64
	block    bool
	readOnly bool
	mode     cacheMode
}

func (d *rawDisk) Size() uint64 { return d.size }

func (d *rawDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("raw disk: negative offset")
	}
	if uint64(off) >= d.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := p
	if uint64(off)+uint64(len(p)) > d.size {
		want = p[:d.size-uint64(off)]
	}
	n, err := d.io.ReadAt(want, off)
	if err == io.EOF && n < len(want) {
		// A file shrunk under us: the missing tail reads as zeros.
		clear(want[n:])
		n, err = len(want), nil
	}
	if err == nil && len(want) < len(p) {
		err = io.EOF
	}
	return n, err
}

func (d *rawDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, fmt.Errorf("disk %s is read-only", d.path)
	}
	if off < 0 || uint64(off)+uint64(len(p)) > d.size {
		return 0, fmt.Errorf("disk %s: write of %d bytes at %d is beyond the disk size %d", d.path, len(p), off, d.size)
	}
	n, err := d.io.WriteAt(p, off)
	if err == nil && d.mode.writeThrough {
		err = unix.Fdatasync(int(d.f.Fd()))
	}
	return n, err
}

func (d *rawDisk) Flush() error {
	if d.readOnly || d.mode.ignoreFlush {
		return nil
	}
	if d.block {
		return d.f.Sync()
	}
	return unix.Fdatasync(int(d.f.Fd()))
}

func (d *rawDisk) checkRange(off, length int64) error {
	if d.readOnly {
		return fmt.Errorf("disk %s is read-only", d.path)
	}
	if off < 0 || length < 0 || uint64(off)+uint64(length) > d.size {
		return fmt.Errorf("disk %s: range %d+%d is beyond the disk size %d", d.path, off, length, d.size)
	}
	return nil
}

func (d *rawDisk) Discard(off, length int64) error {
	if err := d.checkRange(off, length); err != nil {
		return err
	}
	if d.block {
		r := [2]uint64{uint64(off), uint64(length)}
		return unsupported(ioctlPtr(d.f, unix.BLKDISCARD, unsafe.Pointer(&r)))
	}
	return unsupported(unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length))
}

func (d *rawDisk) WriteZeroes(off, length int64) error {
	if err := d.checkRange(off, length); err != nil {
		return err
	}
	if d.block {
		r := [2]uint64{uint64(off), uint64(length)}
		return unsupported(ioctlPtr(d.f, unix.BLKZEROOUT, unsafe.Pointer(&r)))
	}
	fd := int(d.f.Fd())
	err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if err == nil && d.mode.writeThrough {
		err = unix.Fdatasync(fd)
	}
	return unsupported(err)
}

func (d *rawDisk) Close() error { return d.f.Close() }

func ioctlPtr(f *os.File, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// unsupported maps "the file system or device cannot" errnos to
// errors.ErrUnsupported so virtio-blk can stop advertising the feature.
func unsupported(err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("%w: %v", errors.ErrUnsupported, err)
	}
	return err
}

// directAlign is the alignment O_DIRECT needs for buffers, offsets and
// lengths; 4 KiB covers both 512-byte and 4 KiB logical sectors.
const directAlign = 4096

// directFile does I/O on an O_DIRECT file. Aligned requests go straight
// through; others use an aligned bounce buffer, with read-modify-write for
// partial blocks (serialized, so two such writes cannot race).
type directFile struct {
	*os.File
	mu sync.Mutex
}

func alignedBuf(n int) []byte {
	buf := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&buf[0]))%directAlign)) % directAlign
	return buf[skip : skip+n]
}

func isAligned(p []byte, off int64) bool {
	return len(p) > 0 && off%directAlign == 0 && len(p)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&p[0]))%directAlign == 0
}

// maxBounce caps one bounce buffer; longer requests are split.
const maxBounce = 1 << 20

func (d *directFile) ReadAt(p []byte, off int64) (int, error) {
	if isAligned(p, off) {
		return d.File.ReadAt(p, off)
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := pos &^ (directAlign - 1)
		chunk := min(len(p)-done, maxBounce-int(pos-start))
		end := (pos + int64(chunk) + directAlign - 1) &^ (directAlign - 1)
		buf := alignedBuf(int(end - start))
		n, err := d.File.ReadAt(buf, start)
		rel, got := int(pos-start), 0
		if n > rel {
			got = copy(p[done:done+chunk], buf[rel:n])
		}
		done += got
		if got < chunk {
			if err == nil {
				err = io.EOF
			}
			return done, err
		}
	}
	return done, nil
}

func (d *directFile) WriteAt(p []byte, off int64) (int, error) {
	if isAligned(p, off) {
		return d.File.WriteAt(p, off)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := pos &^ (directAlign - 1)
		chunk := min(len(p)-done, maxBounce-int(pos-start))
		end := (pos + int64(chunk) + directAlign - 1) &^ (directAlign - 1)
		buf := alignedBuf(int(end - start))
		// Read the partial first and last blocks; past EOF they are zeros.
		if pos != start || (pos+int64(chunk))%directAlign != 0 {
			if _, err := d.File.ReadAt(buf, start); err != nil && err != io.EOF {
				return done, err
			}
		}
		copy(buf[pos-start:], p[done:done+chunk])
		fi, err := d.File.Stat()
		if err != nil {
			return done, err
		}
		if _, err := d.File.WriteAt(buf, start); err != nil {
			return done, err
		}
		// Writing whole blocks may have extended a regular file past
		// what the caller wrote; put its length back.
		if fi.Mode().IsRegular() && end > fi.Size() {
			if err := d.File.Truncate(max(fi.Size(), pos+int64(chunk))); err != nil {
				return done, err
			}
		}
		done += chunk
	}
	return done, nil
}
