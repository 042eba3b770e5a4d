package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// DefaultClusterBits gives 64 KiB clusters, QEMU's default.
const DefaultClusterBits = 16

// CreateOptions describe a new image.
type CreateOptions struct {
	// ClusterBits is log2 of the cluster size (9..21); 0 means 16.
	ClusterBits int
	// BackingFile is stored as given (relative names are relative to the
	// new image's directory). BackingFormat is "raw", "qcow2" or "" to
	// probe it.
	BackingFile, BackingFormat string
	// PreallocMetadata allocates every L2 table and maps every cluster
	// (the file stays sparse), like qemu-img's preallocation=metadata.
	PreallocMetadata bool
	// Mode is the new file's permission bits; 0 means 0644.
	Mode os.FileMode
}

// Create makes a new version 3 qcow2 image with 16-bit refcounts. It never
// overwrites an existing file. The size is rounded up to a multiple of 512
// bytes, as qemu-img does. A size of 0 with a backing file takes the
// backing file's virtual size.
func Create(path string, size uint64, opts CreateOptions) error {
	bits := opts.ClusterBits
	if bits == 0 {
		bits = DefaultClusterBits
	}
	if bits < minClusterBits || bits > maxClusterBits {
		return fmt.Errorf("qcow2: cluster bits %d out of range %d..%d", bits, minClusterBits, maxClusterBits)
	}
	if opts.PreallocMetadata && opts.BackingFile != "" {
		return errors.New("qcow2: backing file and preallocation cannot be used at the same time")
	}
	if opts.BackingFile != "" {
		bp := resolveBacking(path, opts.BackingFile)
		format := opts.BackingFormat
		if format == "" {
			f, err := ProbeFormat(bp)
			if err != nil {
				return fmt.Errorf("qcow2: backing file: %w", err)
			}
			format = f
		}
		if format != "raw" && format != "qcow2" {
			return fmt.Errorf("qcow2: backing format %q is not supported (raw or qcow2)", format)
		}
		opts.BackingFormat = format
		if size == 0 {
			s, err := virtualSize(bp, format)
			if err != nil {
				return fmt.Errorf("qcow2: backing file: %w", err)
			}
			size = s
		}
	}
	if size > maxVirtualSize {
		return fmt.Errorf("qcow2: size %d is too large", size)
	}
	size = alignUp(size, 512) // QEMU addresses whole sectors
	cs := uint64(1) << bits
	l1Entries := requiredL1(size, uint32(bits))
	if l1Entries*8 > maxL1Bytes {
		return fmt.Errorf("qcow2: size %d needs an L1 table larger than %d bytes; use bigger clusters", size, maxL1Bytes)
	}
	l1Clusters := max(1, (l1Entries*8+cs-1)/cs)
	refsPerBlock := cs * 8 / 16
	// Layout: header | refcount table | refcount blocks | L1 table.
	rtClusters, rbClusters := uint64(1), uint64(1)
	for {
		total := 1 + rtClusters + rbClusters + l1Clusters
		rb := (total + refsPerBlock - 1) / refsPerBlock
		rt := max(1, (rb*8+cs-1)/cs)
		if rb == rbClusters && rt == rtClusters {
			break
		}
		rbClusters, rtClusters = rb, rt
	}
	if rtClusters*cs > maxReftableBytes {
		return fmt.Errorf("qcow2: size %d is too large for cluster size %d", size, cs)
	}
	rtOff := cs
	rbOff := rtOff + rtClusters*cs
	l1Off := rbOff + rbClusters*cs
	total := l1Off/cs + l1Clusters

	h := Header{
		Version:               3,
		ClusterBits:           uint32(bits),
		Size:                  size,
		L1Size:                uint32(l1Entries),
		L1TableOffset:         l1Off,
		RefcountTableOffset:   rtOff,
		RefcountTableClusters: uint32(rtClusters),
		RefcountOrder:         4,
		BackingFile:           opts.BackingFile,
		BackingFormat:         opts.BackingFormat,
	}
	buf, err := h.encodeV3(cs)
	if err != nil {
		return err
	}
	meta := make([]byte, total*cs)
	copy(meta, buf)
	for i := uint64(0); i < rbClusters; i++ {
		binary.BigEndian.PutUint64(meta[rtOff+i*8:], rbOff+i*cs)
	}
	for c := uint64(0); c < total; c++ {
		binary.BigEndian.PutUint16(meta[rbOff+c*2:], 1)
	}

	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("qcow2: create: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return err
	}
	if _, err := f.WriteAt(meta, 0); err != nil {
		return fail(fmt.Errorf("qcow2: create %s: %w", path, err))
	}
	if !opts.PreallocMetadata {
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("qcow2: create %s: %w", path, err))
		}
		if err := f.Close(); err != nil {
			os.Remove(path)
			return fmt.Errorf("qcow2: create %s: %w", path, err)
		}
		return nil
	}
	img, err := OpenFile(f, path, Options{})
	if err != nil {
		return fail(err)
	}
	if err := img.preallocate(); err != nil {
		img.Close()
		os.Remove(path)
		return err
	}
	if err := img.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// virtualSize returns the guest-visible size of a raw or qcow2 file.
func virtualSize(path, format string) (uint64, error) {
	if format == "qcow2" {
		img, err := Open(path, true)
		if err != nil {
			return 0, err
		}
		defer img.Close()
		return img.Size(), nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return uint64(fi.Size()), nil
}

// preallocate maps every guest cluster to a host cluster at the end of the
// file and extends the file sparsely over them.
func (img *Image) preallocate() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	clusters := (img.hdr.Size + img.clusterSize - 1) / img.clusterSize
	for vc := uint64(0); vc < clusters; vc++ {
		t, idx, err := img.l2ForWrite(vc << img.clusterBits)
		if err != nil {
			return err
		}
		if binary.BigEndian.Uint64(t.buf[idx:])&offsetMask != 0 {
			continue
		}
		host, err := img.allocContiguous(1)
		if err != nil {
			return err
		}
		// allocContiguous may have evicted t; look it up again.
		if t, idx, err = img.l2ForWrite(vc << img.clusterBits); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(t.buf[idx:], host|flagCopied)
		t.dirty = true
	}
	if tr, ok := img.f.(interface{ Truncate(int64) error }); ok {
		if err := tr.Truncate(int64(img.nextFree)); err != nil {
			return fmt.Errorf("qcow2: preallocate %s: %w", img.path, err)
		}
	}
	return img.flushLocked()
}

// Resize changes the virtual size. Growing extends the L1 table when
// needed. Shrinking is refused while any cluster past the new end holds
// data, so no guest data is lost silently.
func (img *Image) Resize(newSize uint64) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(true); err != nil {
		return err
	}
	if newSize > maxVirtualSize {
		return fmt.Errorf("qcow2: size %d is too large", newSize)
	}
	old := img.hdr.Size
	if newSize < old {
		if err := img.dropTail(newSize); err != nil {
			return err
		}
	}
	if need := requiredL1(newSize, img.clusterBits); need > uint64(len(img.l1)) {
		if err := img.growL1(need); err != nil {
			return err
		}
	}
	if err := img.flushLocked(); err != nil {
		return err
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], newSize)
	if _, err := img.f.WriteAt(b[:], 24); err != nil {
		return img.fail(err)
	}
	img.hdr.Size = newSize
	return img.flushLocked()
}

// dropTail checks that no data lives past newSize and clears the entries
// there, so that a later grow reads zeros.
func (img *Image) dropTail(newSize uint64) error {
	first := (newSize + img.clusterSize - 1) >> img.clusterBits
	last := (img.hdr.Size + img.clusterSize - 1) >> img.clusterBits
	for vc := first; vc < last; {
		l1i := vc / img.l2Entries
		if l1i >= uint64(len(img.l1)) || img.l1[l1i]&offsetMask == 0 {
			vc = (l1i + 1) * img.l2Entries
			continue
		}
		e, err := img.lookup(vc << img.clusterBits)
		if err != nil {
			return err
		}
		if e&offsetMask != 0 || e&flagCompressed != 0 {
			return fmt.Errorf("qcow2: cannot shrink %s to %d bytes: data is allocated at guest offset %d", img.path, newSize, vc<<img.clusterBits)
		}
		vc++
	}
	// With a backing file an unallocated entry would show its data again
	// after a later grow, so version 3 images get zero flags instead.
	target := uint64(0)
	if img.backing != nil && img.hdr.Version >= 3 {
		target = flagZero
	}
	for vc := first; vc < last; vc++ {
		l1i := vc / img.l2Entries
		if target == 0 && (l1i >= uint64(len(img.l1)) || img.l1[l1i]&offsetMask == 0) {
			continue
		}
		t, idx, err := img.l2ForWrite(vc << img.clusterBits)
		if err != nil {
			return err
		}
		if binary.BigEndian.Uint64(t.buf[idx:]) != target {
			binary.BigEndian.PutUint64(t.buf[idx:], target)
			t.dirty = true
		}
	}
	return nil
}

// growL1 moves the L1 table to a bigger one at the end of the file.
func (img *Image) growL1(entries uint64) error {
	if entries*8 > maxL1Bytes {
		return fmt.Errorf("qcow2: %s: L1 table of %d entries is too large; use bigger clusters", img.path, entries)
	}
	if err := img.flushLocked(); err != nil {
		return err
	}
	clusters := (entries*8 + img.clusterSize - 1) / img.clusterSize
	off, err := img.allocContiguous(clusters)
	if err != nil {
		return err
	}
	l1 := make([]uint64, entries)
	copy(l1, img.l1)
	buf := make([]byte, clusters*img.clusterSize)
	for i, e := range l1 {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	if _, err := img.f.WriteAt(buf, int64(off)); err != nil {
		return img.fail(err)
	}
	// The refcounts of the new table must be on disk before the header
	// points at it.
	if err := img.writeTables(img.rbCache); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return img.fail(err)
	}
	var hb [12]byte
	binary.BigEndian.PutUint32(hb[0:], uint32(entries))
	binary.BigEndian.PutUint64(hb[4:], off)
	if _, err := img.f.WriteAt(hb[:], 36); err != nil {
		return img.fail(err)
	}
	oldOff, oldBytes := img.hdr.L1TableOffset, uint64(len(img.l1))*8
	img.l1 = l1
	img.hdr.L1Size = uint32(entries)
	img.hdr.L1TableOffset = off
	for c := uint64(0); oldOff != 0 && c*img.clusterSize < oldBytes; c++ {
		img.pending = append(img.pending, oldOff+c*img.clusterSize)
	}
	return nil
}
