package qcow2

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// maxCheckClusters bounds the memory Check uses (2 bytes per host
// cluster): 4 TiB of 64 KiB clusters.
const maxCheckClusters = 1 << 26

// Report is the result of Check, in the spirit of `qemu-img check`.
type Report struct {
	// Corruptions counts references to clusters whose refcount is too low
	// (or that lie outside the file, or are misaligned, or have a wrong
	// COPIED flag); such images can lose data when written.
	Corruptions int
	// Leaks counts clusters with a refcount but no reference; harmless
	// wasted space.
	Leaks int
	// Messages describes the first problems found (at most 50).
	Messages []string
	// AllocatedClusters is the number of guest clusters mapped to host
	// clusters; TotalClusters the number of guest clusters.
	AllocatedClusters, TotalClusters uint64
}

// OK reports whether the image has neither corruptions nor leaks.
func (r Report) OK() bool { return r.Corruptions == 0 && r.Leaks == 0 }

func (r *Report) addf(corrupt bool, format string, args ...any) {
	if corrupt {
		r.Corruptions++
	} else {
		r.Leaks++
	}
	if len(r.Messages) < 50 {
		r.Messages = append(r.Messages, fmt.Sprintf(format, args...))
	}
}

// Check walks all metadata, recomputes every cluster's refcount and
// compares it with the stored one. It flushes pending writes first. It
// returns an error only when the check itself cannot run.
func (img *Image) Check() (Report, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	var rep Report
	if err := img.usable(false); err != nil {
		return rep, err
	}
	if err := img.flushLocked(); err != nil {
		return rep, err
	}
	fi, err := img.f.Stat()
	if err != nil {
		return rep, err
	}
	fileSize := uint64(fi.Size())
	nclusters := max(alignUp(fileSize, img.clusterSize), img.nextFree) >> img.clusterBits
	if nclusters > maxCheckClusters {
		return rep, fmt.Errorf("qcow2: %s is too large to check (%d clusters)", img.path, nclusters)
	}
	refs := make([]uint16, nclusters) // saturating counts
	cs := img.clusterSize
	ref := func(off, n uint64, what string) {
		for c := off >> img.clusterBits; c <= (off+n-1)>>img.clusterBits; c++ {
			if c >= nclusters {
				rep.addf(true, "%s at %#x lies beyond the end of the file", what, off)
				return
			}
			if refs[c] < 0xffff {
				refs[c]++
			}
		}
	}
	ref(0, cs, "header")
	ref(img.hdr.RefcountTableOffset, uint64(img.hdr.RefcountTableClusters)*cs, "refcount table")
	for i, e := range img.reftable {
		rb := e & reftableMask
		if rb == 0 {
			continue
		}
		if rb%cs != 0 {
			rep.addf(true, "refcount block %d at %#x is not cluster aligned", i, rb)
			continue
		}
		ref(rb, cs, "refcount block")
	}
	if img.hdr.L1Size > 0 {
		ref(img.hdr.L1TableOffset, uint64(img.hdr.L1Size)*8, "L1 table")
	}
	snaps, tableBytes, err := img.readSnapshots(fileSize)
	if err != nil {
		rep.addf(true, "%v", err)
	}
	if tableBytes > 0 {
		ref(img.hdr.SnapshotsOffset, tableBytes, "snapshot table")
	}
	buf := make([]byte, cs)
	// Snapshot tables share clusters with the active image; count their
	// references without the COPIED checks, which apply to the active L1.
	// Snapshots may all point at the same tables; bound the total work.
	l1Budget := uint64(1 << 22)
	for i, sn := range snaps {
		if sn.l1Size == 0 {
			continue
		}
		if sn.l1Size > l1Budget {
			return rep, fmt.Errorf("qcow2: %s: snapshot tables are too large to check", img.path)
		}
		l1Budget -= sn.l1Size
		if sn.l1Off%cs != 0 || sn.l1Off+sn.l1Size*8 > fileSize || sn.l1Size*8 > maxL1Bytes {
			rep.addf(true, "snapshot %d: L1 table at %#x is invalid", i, sn.l1Off)
			continue
		}
		ref(sn.l1Off, sn.l1Size*8, "snapshot L1 table")
		l1, err := readTable(img.f, sn.l1Off, sn.l1Size*8)
		if err != nil {
			rep.addf(true, "snapshot %d: %v", i, err)
			continue
		}
		for _, e := range l1 {
			l2 := e & offsetMask
			if l2 == 0 {
				continue
			}
			if l2%cs != 0 || l2>>img.clusterBits >= nclusters {
				rep.addf(true, "snapshot %d: L2 table at %#x is invalid", i, l2)
				continue
			}
			ref(l2, cs, "snapshot L2 table")
			if err := readL2(img, buf, l2); err != nil {
				rep.addf(true, "snapshot %d: %v", i, err)
				continue
			}
			for j := uint64(0); j < img.l2Entries; j++ {
				le := binary.BigEndian.Uint64(buf[j*8:])
				img.refEntry(le, ref)
			}
		}
	}
	rep.TotalClusters = (img.hdr.Size + cs - 1) / cs
	type copied struct{ off, entry uint64 }
	var flagged []copied
	for l1i, e := range img.l1 {
		l2 := e & offsetMask
		if l2 == 0 {
			continue
		}
		if l2%cs != 0 {
			rep.addf(true, "L2 table %d at %#x is not cluster aligned", l1i, l2)
			continue
		}
		ref(l2, cs, "L2 table")
		if l2>>img.clusterBits >= nclusters {
			continue
		}
		flagged = append(flagged, copied{l2, e})
		if err := readL2(img, buf, l2); err != nil {
			rep.addf(true, "L2 table %d: %v", l1i, err)
			continue
		}
		for i := uint64(0); i < img.l2Entries; i++ {
			le := binary.BigEndian.Uint64(buf[i*8:])
			vc := uint64(l1i)*img.l2Entries + i
			if le&flagCompressed != 0 {
				img.refEntry(le, ref)
				rep.AllocatedClusters++
				continue
			}
			host := le & offsetMask
			if host == 0 {
				continue
			}
			if vc >= rep.TotalClusters {
				rep.addf(true, "L2 entry for guest cluster %d lies past the virtual size", vc)
			}
			if host%cs != 0 {
				rep.addf(true, "data cluster at %#x (guest cluster %d) is not cluster aligned", host, vc)
				continue
			}
			rep.AllocatedClusters++
			ref(host, cs, "data cluster")
			if host>>img.clusterBits < nclusters {
				flagged = append(flagged, copied{host, le})
			}
		}
	}
	for c := uint64(0); c < nclusters; c++ {
		stored, err := img.refcount(c << img.clusterBits)
		if err != nil {
			return rep, err
		}
		switch want := uint64(refs[c]); {
		case stored < want:
			rep.addf(true, "cluster %d has refcount %d but %d references", c, stored, want)
		case stored > want:
			rep.addf(false, "cluster %d has refcount %d but %d references (leaked)", c, stored, want)
		}
	}
	// Refcounts for clusters past the end of the file are leaks too.
	budget := uint64(maxCheckClusters)
	for bi, e := range img.reftable {
		first := uint64(bi) * img.refsPerBlk
		if e&reftableMask == 0 || first+img.refsPerBlk <= nclusters {
			continue
		}
		for c := max(first, nclusters); c < first+img.refsPerBlk && budget > 0; c++ {
			budget--
			stored, err := img.refcount(c << img.clusterBits)
			if err != nil {
				return rep, err
			}
			if stored > 0 {
				rep.addf(false, "cluster %d past the end of the file has refcount %d (leaked)", c, stored)
			}
		}
	}
	for _, f := range flagged {
		rc, err := img.refcount(f.off)
		if err != nil {
			return rep, err
		}
		if (f.entry&flagCopied != 0) != (rc == 1) {
			rep.addf(true, "COPIED flag of the entry for cluster %#x is wrong (refcount %d)", f.off, rc)
		}
	}
	return rep, nil
}

// refEntry counts the host clusters one L2 entry references.
func (img *Image) refEntry(le uint64, ref func(off, n uint64, what string)) {
	if le&flagCompressed != 0 {
		x := 62 - (img.clusterBits - 8)
		host := le & (1<<x - 1)
		sectors := (le>>x)&(1<<(62-x)-1) + 1
		start := host &^ 511
		ref(start, host-start+sectors*512, "compressed cluster")
		return
	}
	if host := le & offsetMask; host != 0 && host%img.clusterSize == 0 {
		ref(host, img.clusterSize, "data cluster")
	}
}

type snapshot struct{ l1Off, l1Size uint64 }

// readSnapshots parses the snapshot table and returns its entries and
// its size in bytes.
func (img *Image) readSnapshots(fileSize uint64) ([]snapshot, uint64, error) {
	n := img.hdr.NbSnapshots
	if n == 0 {
		return nil, 0, nil
	}
	off := img.hdr.SnapshotsOffset
	var out []snapshot
	pos := off
	var fixed [40]byte
	for i := uint32(0); i < n; i++ {
		if pos+40 > fileSize {
			return out, pos - off, fmt.Errorf("snapshot table runs past the end of the file")
		}
		if err := readFull(img.f, fixed[:], pos, false); err != nil {
			return out, pos - off, err
		}
		be := binary.BigEndian
		out = append(out, snapshot{l1Off: be.Uint64(fixed[0:]), l1Size: uint64(be.Uint32(fixed[8:]))})
		idLen, nameLen := uint64(be.Uint16(fixed[12:])), uint64(be.Uint16(fixed[14:]))
		extra := uint64(be.Uint32(fixed[36:]))
		if extra > 1<<20 {
			return out, pos - off, fmt.Errorf("snapshot %d: extra data of %d bytes", i, extra)
		}
		pos = alignUp(pos+40+extra+idLen+nameLen, 8)
	}
	if pos > fileSize {
		return out, pos - off, fmt.Errorf("snapshot table runs past the end of the file")
	}
	return out, pos - off, nil
}

// readL2 reads an L2 table, preferring the cached copy.
func readL2(img *Image, buf []byte, off uint64) error {
	if t := img.l2Cache.get(off); t != nil {
		copy(buf, t.buf)
		return nil
	}
	return readFull(img.f, buf, off, false)
}

// ChainEntry is one image in a backing chain.
type ChainEntry struct {
	Path, Format string
	VirtualSize  uint64
}

// Info summarizes an image, like `qemu-img info`.
type Info struct {
	Path        string
	Version     uint32
	VirtualSize uint64
	ClusterSize uint64
	// ActualSize is the host space the file occupies (st_blocks * 512).
	ActualSize uint64
	// FileSize is the file's length.
	FileSize uint64
	// BackingFile is the name as stored in the header; BackingPath the
	// resolved path; BackingFormat its format.
	BackingFile, BackingPath, BackingFormat string
	// Chain lists the backing chain below this image, nearest first.
	Chain []ChainEntry
	// Snapshots is the number of internal snapshots.
	Snapshots uint32
}

// Info returns a summary of the image and its backing chain.
func (img *Image) Info() (Info, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	in := Info{
		Path:          img.path,
		Version:       img.hdr.Version,
		VirtualSize:   img.hdr.Size,
		ClusterSize:   img.clusterSize,
		BackingFile:   img.hdr.BackingFile,
		BackingPath:   img.backingPath,
		BackingFormat: img.backingFmt,
		Snapshots:     img.hdr.NbSnapshots,
	}
	fi, err := img.f.Stat()
	if err != nil {
		return in, err
	}
	in.FileSize = uint64(fi.Size())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		in.ActualSize = uint64(st.Blocks) * 512
	}
	for b, p, f := img.backing, img.backingPath, img.backingFmt; b != nil; {
		in.Chain = append(in.Chain, ChainEntry{Path: p, Format: f, VirtualSize: b.Size()})
		next, ok := b.(*Image)
		if !ok {
			break
		}
		b, p, f = next.backing, next.backingPath, next.backingFmt
	}
	return in, nil
}

// ReadInfo opens the image read-only and returns its Info.
func ReadInfo(path string) (Info, error) {
	img, err := Open(path, true)
	if err != nil {
		return Info{}, err
	}
	defer img.Close()
	return img.Info()
}

// IsQcow2 reports whether the file at path starts with the qcow2 magic.
func IsQcow2(path string) bool {
	f, err := ProbeFormat(path)
	return err == nil && f == "qcow2"
}

// Mapped reports whether the guest offset off may hold data anywhere in
// the backing chain (false means it reads as zeros), and for how many
// bytes from off the answer holds. Copy loops use it to skip holes.
func (img *Image) Mapped(off uint64) (bool, uint64, error) {
	img.mu.Lock()
	if err := img.usable(false); err != nil {
		img.mu.Unlock()
		return false, 0, err
	}
	size := img.hdr.Size
	if off >= size {
		img.mu.Unlock()
		return false, 0, nil
	}
	vc := off >> img.clusterBits
	l1i := vc / img.l2Entries
	span := img.clusterSize - off&(img.clusterSize-1)
	entry := uint64(0)
	if l1i < uint64(len(img.l1)) && img.l1[l1i]&offsetMask != 0 {
		var err error
		if entry, err = img.lookup(off); err != nil {
			img.mu.Unlock()
			return false, 0, err
		}
	} else {
		// The whole range of a missing L2 table is unallocated.
		span = (l1i+1)*img.l2Entries<<img.clusterBits - off
	}
	span = min(span, size-off)
	b := img.backing
	img.mu.Unlock()
	switch {
	case entry&flagCompressed != 0 || entry&offsetMask != 0 && entry&flagZero == 0:
		return true, span, nil
	case entry&flagZero != 0 || b == nil || off >= b.Size():
		return false, span, nil
	}
	if bi, ok := b.(*Image); ok {
		m, n, err := bi.Mapped(off)
		if err != nil {
			return false, 0, err
		}
		if n == 0 { // past the backing image's end
			return false, span, nil
		}
		return m, min(span, n), nil
	}
	return true, min(span, b.Size()-off), nil
}
