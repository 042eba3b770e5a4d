package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/storage/qcow2"
)

// Volume types and formats.
const (
	VolFile  = "file"
	VolBlock = "block"
	VolDir   = "dir"

	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatDir   = "dir"
)

// VolumeSpec describes a volume to create (vol-create / vol-create-as).
type VolumeSpec struct {
	Name string
	// CapacityBytes is the guest-visible size. For qcow2 with a backing
	// file, 0 means the backing file's size.
	CapacityBytes uint64
	// AllocationBytes is how much of a raw volume to preallocate with
	// fallocate (0 = fully sparse). qcow2 ignores it; see PreallocMetadata.
	AllocationBytes uint64
	// Format is raw (default) or qcow2.
	Format string
	// BackingPath and BackingFormat make a qcow2 copy-on-write overlay.
	BackingPath, BackingFormat string
	// Mode is the file's permission bits; 0 means 0600 (libvirt's default).
	Mode os.FileMode
	// Owner and Group of the new file; -1 leaves them alone.
	Owner, Group int
	// PreallocMetadata preallocates qcow2 metadata (vol-create-as
	// --prealloc-metadata).
	PreallocMetadata bool
}

// VolumeStat is what a pool refresh learns about one volume.
type VolumeStat struct {
	Name, Path string
	// Format is raw, qcow2 or dir.
	Format string
	// Type is file, block or dir.
	Type string
	// CapacityBytes is the guest-visible size (qcow2 virtual size);
	// AllocationBytes the host space used (st_blocks*512, sparse-aware).
	CapacityBytes, AllocationBytes uint64
	// BackingPath is the resolved backing file of a qcow2 volume.
	BackingPath, BackingFormat string
	Mode                       os.FileMode
	Owner, Group               int
}

// VolumePath returns the path of volume name inside pool p. It refuses
// names that could escape the pool: empty, ".", "..", anything with '/' or
// NUL, and symlinks that resolve outside the pool's target directory.
func VolumePath(p PoolSpec, name string) (string, error) {
	switch {
	case name == "" || name == "." || name == "..":
		return "", fmt.Errorf("invalid volume name '%s'", name)
	case strings.ContainsAny(name, "/\x00"):
		return "", fmt.Errorf("invalid volume name '%s': volume names cannot contain '/' (they must stay inside pool '%s')", name, p.Name)
	}
	if p.TargetPath == "" || !filepath.IsAbs(p.TargetPath) {
		return "", fmt.Errorf("pool '%s': target path '%s' must be absolute", p.Name, p.TargetPath)
	}
	path := filepath.Join(p.TargetPath, name)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return path, nil
	}
	root, err := filepath.EvalSymlinks(p.TargetPath)
	if err != nil {
		return "", fmt.Errorf("pool '%s': %w", p.Name, err)
	}
	dest, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("volume '%s' is a dangling symlink: %w", name, err)
	}
	if rel, err := filepath.Rel(root, dest); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || rel == "." {
		return "", fmt.Errorf("volume '%s' is a symlink pointing outside pool '%s' (to '%s')", name, p.Name, dest)
	}
	return path, nil
}

// StatVolume inspects the file, directory or block device at path. The
// qcow2 format is detected from the header; its capacity is the virtual
// size. A missing backing file does not make the stat fail.
func StatVolume(path string) (VolumeStat, error) {
	v := VolumeStat{Name: filepath.Base(path), Path: path, Owner: -1, Group: -1}
	fi, err := os.Stat(path)
	if err != nil {
		return v, err
	}
	v.Mode = fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		v.AllocationBytes = uint64(st.Blocks) * 512
		v.Owner, v.Group = int(st.Uid), int(st.Gid)
	}
	switch {
	case fi.IsDir():
		v.Type, v.Format, v.CapacityBytes = VolDir, FormatDir, uint64(fi.Size())
		return v, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		v.Type, v.Format = VolBlock, FormatRaw
		f, err := os.Open(path)
		if err != nil {
			return v, err
		}
		defer f.Close()
		if v.CapacityBytes, err = blockDeviceSize(f); err != nil {
			return v, fmt.Errorf("size of %s: %w", path, err)
		}
		v.AllocationBytes = v.CapacityBytes
		return v, nil
	case !fi.Mode().IsRegular():
		return v, fmt.Errorf("%s is not a regular file, directory or block device", path)
	}
	v.Type, v.Format, v.CapacityBytes = VolFile, FormatRaw, uint64(fi.Size())
	if !qcow2.IsQcow2(path) {
		return v, nil
	}
	h, err := readQcow2Header(path)
	if err != nil {
		return v, err
	}
	v.Format, v.CapacityBytes = FormatQcow2, h.Size
	if h.BackingFile != "" {
		v.BackingPath = h.BackingFile
		if !filepath.IsAbs(v.BackingPath) {
			v.BackingPath = filepath.Join(filepath.Dir(path), v.BackingPath)
		}
		v.BackingFormat = h.BackingFormat
		if v.BackingFormat == "" {
			v.BackingFormat, _ = qcow2.ProbeFormat(v.BackingPath)
		}
	}
	return v, nil
}

func readQcow2Header(path string) (*qcow2.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 2<<20) // the largest cluster holds every header
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	h, err := qcow2.ParseHeader(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// ScanVolumes lists the volumes of a pool (pool-refresh): every regular
// file, directory and block device in the target directory, sorted by name.
// Entries that cannot be inspected (unreadable, symlinks out of the pool)
// are skipped.
func ScanVolumes(p PoolSpec) ([]VolumeStat, error) {
	entries, err := os.ReadDir(p.TargetPath)
	if err != nil {
		return nil, fmt.Errorf("pool '%s': cannot open directory '%s': %w", p.Name, p.TargetPath, errors.Unwrap(err))
	}
	var out []VolumeStat
	for _, e := range entries {
		path, err := VolumePath(p, e.Name())
		if err != nil {
			continue
		}
		v, err := StatVolume(path)
		if err != nil {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

// CreateVolume creates a volume in pool p. Raw volumes are sparse files of
// CapacityBytes with AllocationBytes preallocated; qcow2 volumes may have
// a backing file. An existing file is never overwritten, and on failure
// nothing is left behind.
func CreateVolume(p PoolSpec, v VolumeSpec) (VolumeStat, error) {
	path, err := VolumePath(p, v.Name)
	if err != nil {
		return VolumeStat{}, err
	}
	mode := v.Mode.Perm()
	if mode == 0 {
		mode = 0o600
	}
	format := v.Format
	if format == "" {
		format = FormatRaw
	}
	switch format {
	case FormatRaw:
		if v.BackingPath != "" {
			return VolumeStat{}, fmt.Errorf("volume '%s': backing storage is only supported for qcow2 volumes", v.Name)
		}
		err = createRaw(path, v.CapacityBytes, v.AllocationBytes, mode)
	case FormatQcow2:
		err = qcow2.Create(path, v.CapacityBytes, qcow2.CreateOptions{
			BackingFile: v.BackingPath, BackingFormat: v.BackingFormat,
			PreallocMetadata: v.PreallocMetadata, Mode: mode,
		})
	default:
		return VolumeStat{}, fmt.Errorf("volume '%s': format '%s' is not supported (raw or qcow2)", v.Name, format)
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return VolumeStat{}, fmt.Errorf("storage volume '%s' already exists in pool '%s'", v.Name, p.Name)
		}
		return VolumeStat{}, fmt.Errorf("create volume '%s': %w", v.Name, err)
	}
	if err := setOwnership(path, mode, v.Owner, v.Group); err != nil {
		os.Remove(path)
		return VolumeStat{}, fmt.Errorf("create volume '%s': %w", v.Name, err)
	}
	st, err := StatVolume(path)
	if err != nil {
		os.Remove(path)
		return VolumeStat{}, fmt.Errorf("create volume '%s': %w", v.Name, err)
	}
	return st, nil
}

func setOwnership(path string, mode os.FileMode, owner, group int) error {
	if err := os.Chmod(path, mode); err != nil { // the umask must not win
		return err
	}
	if owner != -1 || group != -1 {
		return os.Chown(path, owner, group)
	}
	return nil
}

func createRaw(path string, capacity, allocation uint64, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(capacity))
	if err == nil && allocation > 0 {
		err = preallocate(f, 0, int64(min(allocation, capacity)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// preallocate allocates [off, off+n) with fallocate, writing zeros where
// the file system cannot.
func preallocate(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, off, n)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	zeros := make([]byte, 1<<20)
	for pos := off; pos < off+n; {
		c := min(int64(len(zeros)), off+n-pos)
		if _, err := f.WriteAt(zeros[:c], pos); err != nil {
			return err
		}
		pos += c
	}
	return nil
}

// CloneVolume copies src into a new volume newName of pool p. With cow and
// a qcow2 source, the clone is a qcow2 overlay whose backing file is src.
// Without cow a qcow2 source becomes a standalone qcow2 image holding the
// data of its whole backing chain (like qemu-img convert), and a raw
// source a sparse copy of the file.
func CloneVolume(p PoolSpec, src VolumeStat, newName string, cow bool) (VolumeStat, error) {
	dst, err := VolumePath(p, newName)
	if err != nil {
		return VolumeStat{}, err
	}
	mode := src.Mode
	if mode == 0 {
		mode = 0o600
	}
	if cow && src.Format == FormatQcow2 {
		err = qcow2.Create(dst, src.CapacityBytes, qcow2.CreateOptions{BackingFile: src.Path, BackingFormat: FormatQcow2, Mode: mode})
	} else if src.Type == VolDir {
		err = fmt.Errorf("cloning directory volumes is not supported")
	} else if src.Format == FormatQcow2 {
		err = flattenQcow2(src.Path, dst, mode)
	} else {
		err = copySparse(src.Path, dst, mode)
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return VolumeStat{}, fmt.Errorf("storage volume '%s' already exists in pool '%s'", newName, p.Name)
		}
		return VolumeStat{}, fmt.Errorf("clone volume '%s' to '%s': %w", src.Name, newName, err)
	}
	if err := setOwnership(dst, mode, -1, -1); err != nil {
		os.Remove(dst)
		return VolumeStat{}, err
	}
	return StatVolume(dst)
}

// flattenQcow2 writes the guest-visible content of a qcow2 chain into a
// new standalone qcow2 image, skipping ranges that read as zeros.
func flattenQcow2(srcPath, dstPath string, mode os.FileMode) error {
	in, err := qcow2.Open(srcPath, true)
	if err != nil {
		return err
	}
	defer in.Close()
	h := in.Header()
	if err := qcow2.Create(dstPath, h.Size, qcow2.CreateOptions{ClusterBits: int(h.ClusterBits), Mode: mode}); err != nil {
		return err
	}
	out, err := qcow2.Open(dstPath, false)
	if err != nil {
		os.Remove(dstPath)
		return err
	}
	buf := make([]byte, h.ClusterSize())
	for off := uint64(0); off < h.Size && err == nil; {
		var mapped bool
		var n uint64
		if mapped, n, err = in.Mapped(off); err != nil || n == 0 {
			break
		}
		for pos := off; mapped && pos < off+n && err == nil; {
			c := min(uint64(len(buf)), off+n-pos)
			if _, err = in.ReadAt(buf[:c], int64(pos)); err == nil && !isZero(buf[:c]) {
				_, err = out.WriteAt(buf[:c], int64(pos))
			}
			pos += c
		}
		off += n
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dstPath)
	}
	return err
}

func copySparse(srcPath, dstPath string, mode os.FileMode) error {
	in, err := os.Open(srcPath)
	if err != nil {
		return err
	}
	defer in.Close()
	size, err := fileSize(in)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dstPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	err = out.Truncate(int64(size))
	if err == nil {
		err = forEachExtent(in, size, func(off, n int64) error {
			return copyRange(out, in, off, n)
		})
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dstPath)
	}
	return err
}

func fileSize(f *os.File) (uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode()&os.ModeDevice != 0 {
		return blockDeviceSize(f)
	}
	return uint64(fi.Size()), nil
}

// forEachExtent calls fn for every data extent of f below size, found
// with SEEK_DATA/SEEK_HOLE; without them the whole range is one extent.
func forEachExtent(f *os.File, size uint64, fn func(off, n int64) error) error {
	fd := int(f.Fd())
	end := int64(size)
	for pos := int64(0); pos < end; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return fn(pos, end-pos)
		}
		if data >= end {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > end {
			hole = end
		}
		if err := fn(data, hole-data); err != nil {
			return err
		}
		pos = hole
	}
	return nil
}

// copyRange copies [off, off+n) between files, skipping all-zero blocks so
// that the destination stays sparse.
func copyRange(dst io.WriterAt, src io.ReaderAt, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for pos := off; pos < off+n; {
		c := min(int64(len(buf)), off+n-pos)
		got, err := src.ReadAt(buf[:c], pos)
		if got == 0 && err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		for b := 0; b < got; b += 4096 {
			blk := buf[b:min(got, b+4096)]
			if isZero(blk) {
				continue
			}
			if _, err := dst.WriteAt(blk, pos+int64(b)); err != nil {
				return err
			}
		}
		pos += int64(got)
	}
	return nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// lockVolume takes the same OFD lock a running domain holds, so that
// volume operations fail cleanly on a disk in use.
func lockVolume(f *os.File, v VolumeStat) error {
	if err := lockFile(f, v.Path, false); err != nil {
		return fmt.Errorf("volume '%s' is in use by a running domain", v.Name)
	}
	return nil
}

// ResizeVolume changes a volume's capacity (vol-resize). Shrinking needs
// shrink. allocate preallocates the new space of raw volumes. qcow2
// volumes grow their L1 table as needed and refuse to shrink over data.
func ResizeVolume(v VolumeStat, capacity uint64, shrink, allocate bool) error {
	if v.Type != VolFile {
		return fmt.Errorf("volume '%s': resizing %s volumes is not supported", v.Name, v.Type)
	}
	if capacity < v.CapacityBytes && !shrink {
		return errors.New("Can't shrink capacity below current capacity unless shrink flag explicitly specified")
	}
	f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockVolume(f, v); err != nil {
		return err
	}
	if v.Format == FormatQcow2 {
		if allocate {
			return errors.New("preallocate is only supported for raw type volume")
		}
		img, err := qcow2.OpenFile(f, v.Path, qcow2.Options{})
		if err != nil {
			return err
		}
		err = img.Resize(capacity)
		if cerr := img.Close(); err == nil {
			err = cerr
		}
		return err
	}
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(capacity)); err != nil {
		return fmt.Errorf("resize volume '%s': %w", v.Name, err)
	}
	if allocate && capacity > size {
		if err := preallocate(f, int64(size), int64(capacity-size)); err != nil {
			return fmt.Errorf("resize volume '%s': %w", v.Name, err)
		}
	}
	return f.Sync()
}

// WipeVolume zeroes a volume's data (vol-wipe). Raw files get zeros
// written over their data extents (holes stay holes); qcow2 volumes are
// recreated empty with the same size, cluster size and backing file.
func WipeVolume(v VolumeStat) error {
	switch {
	case v.Type == VolDir:
		return fmt.Errorf("volume '%s': wiping directory volumes is not supported", v.Name)
	case v.Format == FormatQcow2:
		return wipeQcow2(v)
	}
	f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockVolume(f, v); err != nil {
		return err
	}
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	err = forEachExtent(f, size, func(off, n int64) error {
		for pos := off; pos < off+n; {
			c := min(int64(len(zeros)), off+n-pos)
			if _, err := f.WriteAt(zeros[:c], pos); err != nil {
				return err
			}
			pos += c
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wipe volume '%s': %w", v.Name, err)
	}
	return f.Sync()
}

func wipeQcow2(v VolumeStat) error {
	f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockVolume(f, v); err != nil {
		return err
	}
	h, err := readQcow2Header(v.Path)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(v.Path), "."+filepath.Base(v.Path)+".wipe")
	os.Remove(tmp)
	err = qcow2.Create(tmp, h.Size, qcow2.CreateOptions{
		ClusterBits: int(h.ClusterBits), BackingFile: h.BackingFile, BackingFormat: h.BackingFormat,
		Mode: fi.Mode().Perm(),
	})
	if err != nil {
		return fmt.Errorf("wipe volume '%s': %w", v.Name, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		os.Chown(tmp, int(st.Uid), int(st.Gid))
	}
	if err := os.Rename(tmp, v.Path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wipe volume '%s': %w", v.Name, err)
	}
	return nil
}

// DeleteVolume removes a volume (vol-delete); it fails while a domain has
// the volume open.
func DeleteVolume(v VolumeStat) error {
	if v.Type == VolDir {
		if err := unix.Rmdir(v.Path); err != nil {
			return fmt.Errorf("delete volume '%s': %w", v.Name, err)
		}
		return nil
	}
	if v.Type == VolFile {
		f, err := os.OpenFile(v.Path, os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("delete volume '%s': %w", v.Name, err)
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
		err = unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk)
		f.Close()
		if err == nil && lk.Type != unix.F_UNLCK {
			return fmt.Errorf("volume '%s' is in use by a running domain", v.Name)
		}
	}
	if err := os.Remove(v.Path); err != nil {
		return fmt.Errorf("delete volume '%s': %w", v.Name, err)
	}
	return nil
}

// Upload writes length bytes from r into the volume's file at offset
// (vol-upload). The bytes are the file's own (uploading a qcow2 image into
// a volume makes it a qcow2 volume). length 0 means until r ends. progress,
// if set, is called after each chunk with the bytes done and the total (0
// when unknown).
func Upload(v VolumeStat, r io.Reader, offset, length uint64, progress func(done, total uint64)) error {
	if v.Type == VolDir {
		return fmt.Errorf("volume '%s': cannot upload into a directory volume", v.Name)
	}
	f, err := os.OpenFile(v.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockVolume(f, v); err != nil {
		return err
	}
	if length > 0 {
		r = io.LimitReader(r, int64(length))
	}
	buf := make([]byte, 1<<20)
	var done uint64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := f.WriteAt(buf[:n], int64(offset+done)); err != nil {
				return fmt.Errorf("upload to volume '%s': %w", v.Name, err)
			}
			done += uint64(n)
			if progress != nil {
				progress(done, length)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("upload to volume '%s': %w", v.Name, rerr)
		}
	}
	if length > 0 && done < length {
		return fmt.Errorf("upload to volume '%s': stream ended after %d of %d bytes", v.Name, done, length)
	}
	return f.Sync()
}

// Download copies length bytes of the volume's file from offset to w
// (vol-download); length 0 means to the end. Holes are not read: when w is
// a regular *os.File they stay holes (w is extended with Truncate), else
// zeros are written for them.
func Download(v VolumeStat, w io.Writer, offset, length uint64, progress func(done, total uint64)) error {
	f, err := os.Open(v.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	if offset > size {
		return fmt.Errorf("download from volume '%s': offset %d is beyond its size %d", v.Name, offset, size)
	}
	if length == 0 || offset+length > size {
		length = size - offset
	}
	out, seekable := w.(*os.File)
	var outBase int64
	if seekable {
		fi, err := out.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			seekable = false
		} else if outBase, err = out.Seek(0, io.SeekCurrent); err != nil {
			seekable = false
		}
	}
	end := offset + length
	var done uint64
	buf := make([]byte, 1<<20)
	zeros := make([]byte, 1<<20)
	emitZeros := func(n uint64) error {
		for n > 0 {
			c := min(n, uint64(len(zeros)))
			if _, err := w.Write(zeros[:c]); err != nil {
				return err
			}
			n -= c
			done += c
		}
		return nil
	}
	pos := offset
	err = forEachExtent(f, end, func(off, n int64) error {
		start, stop := max(uint64(off), offset), uint64(off+n)
		if stop <= start {
			return nil
		}
		if start > pos {
			if seekable {
				done += start - pos
			} else if err := emitZeros(start - pos); err != nil {
				return err
			}
		}
		for p := start; p < stop; {
			c := min(uint64(len(buf)), stop-p)
			got, err := f.ReadAt(buf[:c], int64(p))
			if got > 0 {
				if seekable {
					_, err = out.WriteAt(buf[:got], outBase+int64(p-offset))
				} else {
					_, err = w.Write(buf[:got])
				}
				done += uint64(got)
				p += uint64(got)
				if progress != nil {
					progress(done, length)
				}
			}
			if err != nil && err != io.EOF {
				return err
			}
			if got == 0 {
				return fmt.Errorf("short read at %d", p)
			}
		}
		pos = stop
		return nil
	})
	if err == nil && pos < end {
		if seekable {
			done += end - pos
		} else {
			err = emitZeros(end - pos)
		}
	}
	if err == nil && seekable {
		if fi, serr := out.Stat(); serr == nil && fi.Size() < outBase+int64(length) {
			err = out.Truncate(outBase + int64(length))
		}
		if err == nil {
			_, err = out.Seek(outBase+int64(length), io.SeekStart)
		}
	}
	if err != nil {
		return fmt.Errorf("download from volume '%s': %w", v.Name, err)
	}
	if progress != nil {
		progress(length, length)
	}
	return nil
}
