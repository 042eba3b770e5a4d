package qcow2

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

func uintptrOf(p *uint64) uintptr { return uintptr(unsafe.Pointer(p)) }

// getRefcount decodes entry i of a refcount block with 1<<order bit entries.
func getRefcount(b []byte, i uint64, order uint32) uint64 {
	switch order {
	case 0, 1, 2:
		bits := uint64(1) << order
		per := 8 / bits
		return uint64(b[i/per]>>((i%per)*bits)) & (1<<bits - 1)
	case 3:
		return uint64(b[i])
	case 4:
		return uint64(binary.BigEndian.Uint16(b[i*2:]))
	case 5:
		return uint64(binary.BigEndian.Uint32(b[i*4:]))
	default:
		return binary.BigEndian.Uint64(b[i*8:])
	}
}

// putRefcount encodes entry i; v must fit the entry width.
func putRefcount(b []byte, i uint64, order uint32, v uint64) {
	switch order {
	case 0, 1, 2:
		bits := uint64(1) << order
		per := 8 / bits
		shift := (i % per) * bits
		mask := byte((1<<bits - 1) << shift)
		b[i/per] = b[i/per]&^mask | byte(v<<shift)&mask
	case 3:
		b[i] = byte(v)
	case 4:
		binary.BigEndian.PutUint16(b[i*2:], uint16(v))
	case 5:
		binary.BigEndian.PutUint32(b[i*4:], uint32(v))
	default:
		binary.BigEndian.PutUint64(b[i*8:], v)
	}
}

func (img *Image) maxRefcount() uint64 {
	if img.refOrder >= 6 {
		return ^uint64(0)
	}
	return 1<<(uint64(1)<<img.refOrder) - 1
}

// refcount returns the refcount of the cluster at host offset off.
func (img *Image) refcount(off uint64) (uint64, error) {
	ci := off >> img.clusterBits
	bi := ci / img.refsPerBlk
	if bi >= uint64(len(img.reftable)) {
		return 0, nil
	}
	rb := img.reftable[bi] & reftableMask
	if rb == 0 {
		return 0, nil
	}
	t, err := img.loadTable(img.rbCache, rb, false)
	if err != nil {
		return 0, err
	}
	return getRefcount(t.buf, ci%img.refsPerBlk, img.refOrder), nil
}

// setRefcount sets the refcount of the cluster at off, allocating refcount
// blocks and growing the refcount table as needed.
func (img *Image) setRefcount(off, v uint64) error {
	if v > img.maxRefcount() {
		return fmt.Errorf("qcow2: %s: refcount overflow at cluster %#x", img.path, off)
	}
	ci := off >> img.clusterBits
	bi := ci / img.refsPerBlk
	if bi >= uint64(len(img.reftable)) {
		if v == 0 {
			return nil
		}
		if err := img.growReftable(bi + 1); err != nil {
			return err
		}
	}
	rb := img.reftable[bi] & reftableMask
	if rb == 0 {
		if v == 0 {
			return nil
		}
		var err error
		if rb, err = img.newRefblock(bi); err != nil {
			return err
		}
	}
	t, err := img.loadTable(img.rbCache, rb, false)
	if err != nil {
		return err
	}
	putRefcount(t.buf, ci%img.refsPerBlk, img.refOrder, v)
	t.dirty = true
	return nil
}

// newRefblock allocates refcount block bi at the end of the file. The
// block, and its own refcount, reach the disk before the refcount table
// entry that points to it, so a crash at any point leaves at worst a
// leaked cluster.
func (img *Image) newRefblock(bi uint64) (uint64, error) {
	rb, err := img.reserve(1)
	if err != nil {
		return 0, err
	}
	t, err := img.newTable(img.rbCache, rb, false)
	if err != nil {
		return 0, err
	}
	if self := rb >> img.clusterBits; self/img.refsPerBlk == bi {
		putRefcount(t.buf, self%img.refsPerBlk, img.refOrder, 1)
	} else if err := img.setRefcount(rb, 1); err != nil {
		return 0, err
	}
	if err := img.writeTables(img.rbCache); err != nil {
		return 0, err
	}
	if err := img.f.Sync(); err != nil {
		return 0, img.fail(err)
	}
	img.reftable[bi] = rb
	return rb, img.writeReftableEntry(bi)
}

func (img *Image) writeReftableEntry(i uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], img.reftable[i])
	if _, err := img.f.WriteAt(b[:], int64(img.hdr.RefcountTableOffset+i*8)); err != nil {
		return img.fail(err)
	}
	return nil
}

// growReftable moves the refcount table to a larger one at the end of the
// file, with room for the refcount blocks that cover the new table itself.
func (img *Image) growReftable(minEntries uint64) error {
	perCluster := img.clusterSize / 8
	entries := max(minEntries, uint64(len(img.reftable))*2)
	var clusters, tableOff, end uint64
	for {
		clusters = (entries + perCluster - 1) / perCluster
		tableOff = img.nextFree
		end = tableOff + clusters*img.clusterSize
		// Blocks for everything up to end, plus the blocks those need.
		need := (end>>img.clusterBits+clusters/img.refsPerBlk+2)/img.refsPerBlk + 2
		if entries >= need {
			break
		}
		entries = need
	}
	if clusters*img.clusterSize > maxReftableBytes {
		return fmt.Errorf("qcow2: %s: refcount table would exceed %d bytes", img.path, maxReftableBytes)
	}
	if img.deviceLimit != 0 && end > img.deviceLimit {
		return fmt.Errorf("qcow2: %s: no space left on the block device", img.path)
	}
	newTable := make([]uint64, clusters*perCluster)
	copy(newTable, img.reftable)
	buf := make([]byte, clusters*img.clusterSize)
	for i, e := range newTable {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	img.nextFree = end
	if _, err := img.f.WriteAt(buf, int64(tableOff)); err != nil {
		return img.fail(err)
	}
	// Switch to the new table in memory first: refcounts for its own
	// clusters (and any refcount blocks they need) go into it, and become
	// durable before the header points at it. Until then the old table
	// sees them as leaks at worst.
	oldOff, oldClusters := img.hdr.RefcountTableOffset, uint64(img.hdr.RefcountTableClusters)
	img.reftable = newTable
	img.hdr.RefcountTableOffset = tableOff
	img.hdr.RefcountTableClusters = uint32(clusters)
	for i := uint64(0); i < clusters; i++ {
		if err := img.setRefcount(tableOff+i*img.clusterSize, 1); err != nil {
			return err
		}
	}
	if err := img.writeTables(img.rbCache); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return img.fail(err)
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[0:], tableOff)
	binary.BigEndian.PutUint32(hb[8:], uint32(clusters))
	if _, err := img.f.WriteAt(hb[:], 48); err != nil {
		return img.fail(err)
	}
	if err := img.f.Sync(); err != nil {
		return img.fail(err)
	}
	for i := uint64(0); i < oldClusters; i++ {
		img.pending = append(img.pending, oldOff+i*img.clusterSize)
	}
	return nil
}

// reserve advances the end of the allocated area by n clusters.
func (img *Image) reserve(n uint64) (uint64, error) {
	off := img.nextFree
	end := off + n*img.clusterSize
	if img.deviceLimit != 0 && end > img.deviceLimit {
		return 0, fmt.Errorf("qcow2: %s: no space left on the block device", img.path)
	}
	img.nextFree = end
	return off, nil
}

// allocCluster returns a free cluster with refcount 1, reusing freed
// clusters inside the file before growing it.
func (img *Image) allocCluster() (uint64, error) {
	off, _, err := img.allocClusterFresh()
	return off, err
}

// allocClusterFresh is allocCluster that also says whether the cluster
// is fresh: past the end the regular file had when opened and never handed
// out before, so it reads as zeros until written.
func (img *Image) allocClusterFresh() (uint64, bool, error) {
	for img.freeHint < img.nextFree {
		off := img.freeHint
		img.freeHint += img.clusterSize
		if off == 0 {
			continue // the header cluster is never free
		}
		rc, err := img.refcount(off)
		if err != nil {
			return 0, false, err
		}
		if rc == 0 {
			return off, false, img.setRefcount(off, 1)
		}
	}
	off, err := img.reserve(1)
	if err != nil {
		return 0, false, err
	}
	img.freeHint = img.nextFree
	return off, img.deviceLimit == 0, img.setRefcount(off, 1)
}

// fallocateCluster allocates a fresh cluster's space in the file (reading
// as zeros), so a partial write need not write the rest of the cluster.
func (img *Image) fallocateCluster(off uint64) bool {
	fd, ok := img.f.(interface{ Fd() uintptr })
	return ok && unix.Fallocate(int(fd.Fd()), 0, int64(off), int64(img.clusterSize)) == nil
}

// allocContiguous appends n clusters at the end of the file.
func (img *Image) allocContiguous(n uint64) (uint64, error) {
	off, err := img.reserve(n)
	if err != nil {
		return 0, err
	}
	for i := uint64(0); i < n; i++ {
		if err := img.setRefcount(off+i*img.clusterSize, 1); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// decref drops one reference to the cluster at off, punching a hole when
// it becomes free.
func (img *Image) decref(off uint64) error {
	rc, err := img.refcount(off)
	if err != nil {
		return err
	}
	if rc == 0 {
		return fmt.Errorf("qcow2: %s: corrupt refcounts: freeing cluster %#x with refcount 0", img.path, off)
	}
	if err := img.setRefcount(off, rc-1); err != nil {
		return err
	}
	if rc == 1 {
		if off < img.freeHint {
			img.freeHint = off
		}
		if fd, ok := img.f.(interface{ Fd() uintptr }); ok {
			// Best effort: give the space back to the host file system.
			_ = unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(img.clusterSize))
		}
	}
	return nil
}
