// Package qcow2 reads and writes QEMU copy-on-write version 2 and 3 disk
// images in pure Go: header parsing and validation, two-level cluster
// lookup, cluster allocation with refcount maintenance, backing files,
// zero clusters, discard, creation, resizing and consistency checks.
//
// Images with encryption, compressed clusters (on read or write), external
// data files or extended L2 entries are refused with clear errors. Internal
// snapshots are readable but make an image read-only for this package.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic is the four bytes every qcow image starts with ("QFI\xfb").
const Magic = 0x514649fb

// Limits that keep a hostile image from making us allocate unbounded memory.
const (
	minClusterBits   = 9
	maxClusterBits   = 21
	maxL1Bytes       = 32 << 20 // same limit as QEMU's QCOW_MAX_L1_SIZE
	maxReftableBytes = 8 << 20  // QCOW_MAX_REFTABLE_SIZE
	maxBackingName   = 1023
	maxSnapshots     = 65536
	maxVirtualSize   = 1 << 61
	v2HeaderLength   = 72
	v3HeaderLength   = 104
)

// Incompatible feature bits (version 3).
const (
	IncompatDirty        = 1 << 0
	IncompatCorrupt      = 1 << 1
	IncompatDataFile     = 1 << 2
	IncompatCompression  = 1 << 3
	IncompatExtendedL2   = 1 << 4
	knownIncompatibleSet = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857
	extBitmaps       = 0x23852875
	extEncryption    = 0x0537be77
	extDataFile      = 0x44415441
)

// Header is the parsed qcow2 header with the extensions vsh understands.
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64 // virtual disk size in bytes
	CryptMethod           uint32
	L1Size                uint32 // entries
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	IncompatibleFeatures  uint64
	CompatibleFeatures    uint64
	AutoclearFeatures     uint64
	RefcountOrder         uint32 // refcount width is 1<<RefcountOrder bits
	HeaderLength          uint32
	CompressionType       uint8

	// BackingFile is the backing file name exactly as stored (may be
	// relative to the image's directory); empty when there is none.
	BackingFile string
	// BackingFormat comes from the backing-format header extension.
	BackingFormat string
	// FeatureNames maps "type:bit" to a name from the feature name table
	// extension, used to word errors about unknown features.
	FeatureNames map[string]string
}

// ClusterSize returns the cluster size in bytes.
func (h *Header) ClusterSize() uint64 { return 1 << h.ClusterBits }

// l2Entries returns how many entries one L2 table holds.
func (h *Header) l2Entries() uint64 { return h.ClusterSize() / 8 }

// requiredL1 returns how many L1 entries a disk of size bytes needs.
func requiredL1(size uint64, clusterBits uint32) uint64 {
	perL2 := uint64(1) << (clusterBits + clusterBits - 3)
	return (size + perL2 - 1) / perL2
}

// ParseHeader parses and validates a qcow2 header from buf, which must
// hold at least the image's first cluster (or the whole file when it is
// shorter). It refuses anything vsh cannot handle safely, with an error
// that names the reason.
func ParseHeader(buf []byte) (*Header, error) {
	if len(buf) < v2HeaderLength {
		return nil, errors.New("qcow2: file too short for a qcow2 header")
	}
	be := binary.BigEndian
	if be.Uint32(buf[0:]) != Magic {
		return nil, errors.New("qcow2: bad magic (not a qcow2 image)")
	}
	h := &Header{
		Version:               be.Uint32(buf[4:]),
		BackingFileOffset:     be.Uint64(buf[8:]),
		BackingFileSize:       be.Uint32(buf[16:]),
		ClusterBits:           be.Uint32(buf[20:]),
		Size:                  be.Uint64(buf[24:]),
		CryptMethod:           be.Uint32(buf[32:]),
		L1Size:                be.Uint32(buf[36:]),
		L1TableOffset:         be.Uint64(buf[40:]),
		RefcountTableOffset:   be.Uint64(buf[48:]),
		RefcountTableClusters: be.Uint32(buf[56:]),
		NbSnapshots:           be.Uint32(buf[60:]),
		SnapshotsOffset:       be.Uint64(buf[64:]),
		RefcountOrder:         4,
		HeaderLength:          v2HeaderLength,
	}
	switch h.Version {
	case 2:
	case 3:
		if len(buf) < v3HeaderLength {
			return nil, errors.New("qcow2: file too short for a version 3 header")
		}
		h.IncompatibleFeatures = be.Uint64(buf[72:])
		h.CompatibleFeatures = be.Uint64(buf[80:])
		h.AutoclearFeatures = be.Uint64(buf[88:])
		h.RefcountOrder = be.Uint32(buf[96:])
		h.HeaderLength = be.Uint32(buf[100:])
	default:
		return nil, fmt.Errorf("qcow2: unsupported version %d (only 2 and 3)", h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, fmt.Errorf("qcow2: cluster_bits %d out of range %d..%d", h.ClusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.ClusterSize()
	if h.Version == 3 {
		if h.HeaderLength < v3HeaderLength || h.HeaderLength%8 != 0 || uint64(h.HeaderLength) > cs {
			return nil, fmt.Errorf("qcow2: invalid header length %d", h.HeaderLength)
		}
		if h.HeaderLength > v3HeaderLength && len(buf) > v3HeaderLength {
			h.CompressionType = buf[v3HeaderLength]
		}
	}
	if h.CryptMethod != 0 {
		return nil, errors.New("qcow2: encrypted qcow2 images are not supported")
	}
	if h.RefcountOrder > 6 {
		return nil, fmt.Errorf("qcow2: refcount_order %d is invalid (max 6)", h.RefcountOrder)
	}
	if err := h.checkFeatures(); err != nil {
		return nil, err
	}
	if h.Size > maxVirtualSize {
		return nil, fmt.Errorf("qcow2: virtual size %d is too large", h.Size)
	}
	if uint64(h.L1Size)*8 > maxL1Bytes {
		return nil, fmt.Errorf("qcow2: L1 table of %d entries is too large", h.L1Size)
	}
	if uint64(h.L1Size) < requiredL1(h.Size, h.ClusterBits) {
		return nil, fmt.Errorf("qcow2: L1 table of %d entries is too small for virtual size %d", h.L1Size, h.Size)
	}
	if h.L1Size > 0 && (h.L1TableOffset == 0 || h.L1TableOffset%cs != 0) {
		return nil, fmt.Errorf("qcow2: L1 table offset %#x is not cluster aligned", h.L1TableOffset)
	}
	if h.RefcountTableOffset == 0 || h.RefcountTableOffset%cs != 0 {
		return nil, fmt.Errorf("qcow2: refcount table offset %#x is not cluster aligned", h.RefcountTableOffset)
	}
	if h.RefcountTableClusters == 0 || uint64(h.RefcountTableClusters)*cs > maxReftableBytes {
		return nil, fmt.Errorf("qcow2: refcount table of %d clusters is invalid", h.RefcountTableClusters)
	}
	if h.NbSnapshots > maxSnapshots {
		return nil, fmt.Errorf("qcow2: too many snapshots (%d)", h.NbSnapshots)
	}
	if h.NbSnapshots > 0 && h.SnapshotsOffset%cs != 0 {
		return nil, fmt.Errorf("qcow2: snapshot table offset %#x is not cluster aligned", h.SnapshotsOffset)
	}
	if err := h.parseExtensions(buf); err != nil {
		return nil, err
	}
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize == 0 || h.BackingFileSize > maxBackingName {
			return nil, fmt.Errorf("qcow2: backing file name length %d is invalid", h.BackingFileSize)
		}
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if end > cs || end > uint64(len(buf)) || end < h.BackingFileOffset {
			return nil, errors.New("qcow2: backing file name lies outside the header cluster")
		}
		h.BackingFile = string(buf[h.BackingFileOffset:end])
	}
	return h, nil
}

func (h *Header) checkFeatures() error {
	f := h.IncompatibleFeatures
	if unknown := f &^ knownIncompatibleSet; unknown != 0 {
		return fmt.Errorf("qcow2: unsupported incompatible feature bits %#x", unknown)
	}
	switch {
	case f&IncompatCorrupt != 0:
		return errors.New("qcow2: image is marked corrupt; repair it with 'qemu-img check -r all'")
	case f&IncompatDirty != 0:
		return errors.New("qcow2: image is dirty (lazy refcounts, not closed cleanly); repair it with 'qemu-img check -r all'")
	case f&IncompatDataFile != 0:
		return errors.New("qcow2: images with an external data file are not supported")
	case f&IncompatExtendedL2 != 0:
		return errors.New("qcow2: images with extended L2 entries (subclusters) are not supported")
	}
	return nil
}

// parseExtensions walks the header extensions that follow the fixed header
// inside the first cluster.
func (h *Header) parseExtensions(buf []byte) error {
	be := binary.BigEndian
	end := uint64(len(buf))
	if cs := h.ClusterSize(); cs < end {
		end = cs
	}
	if h.BackingFileOffset != 0 && h.BackingFileOffset < end {
		end = h.BackingFileOffset
	}
	pos := uint64(h.HeaderLength)
	for pos+8 <= end {
		typ := be.Uint32(buf[pos:])
		length := uint64(be.Uint32(buf[pos+4:]))
		pos += 8
		if typ == extEnd {
			return nil
		}
		if length > end-pos {
			return fmt.Errorf("qcow2: header extension %#x overruns the header cluster", typ)
		}
		data := buf[pos : pos+length]
		switch typ {
		case extBackingFormat:
			h.BackingFormat = strings.TrimRight(string(data), "\x00")
		case extFeatureTable:
			for i := 0; i+48 <= len(data); i += 48 {
				if h.FeatureNames == nil {
					h.FeatureNames = map[string]string{}
				}
				key := fmt.Sprintf("%d:%d", data[i], data[i+1])
				h.FeatureNames[key] = strings.TrimRight(string(data[i+2:i+48]), "\x00")
			}
		case extEncryption:
			return errors.New("qcow2: encrypted qcow2 images are not supported")
		case extDataFile:
			return errors.New("qcow2: images with an external data file are not supported")
		}
		pos += (length + 7) &^ 7
	}
	return nil
}

// encodeV3 serializes a version 3 header (104 bytes, no compression type
// field) followed by the optional backing format extension, the end marker
// and the backing file name. It returns the bytes of the header cluster.
func (h *Header) encodeV3(clusterSize uint64) ([]byte, error) {
	buf := make([]byte, clusterSize)
	be := binary.BigEndian
	be.PutUint32(buf[0:], Magic)
	be.PutUint32(buf[4:], 3)
	be.PutUint32(buf[20:], h.ClusterBits)
	be.PutUint64(buf[24:], h.Size)
	be.PutUint32(buf[36:], h.L1Size)
	be.PutUint64(buf[40:], h.L1TableOffset)
	be.PutUint64(buf[48:], h.RefcountTableOffset)
	be.PutUint32(buf[56:], h.RefcountTableClusters)
	be.PutUint64(buf[72:], h.IncompatibleFeatures)
	be.PutUint64(buf[80:], h.CompatibleFeatures)
	be.PutUint64(buf[88:], h.AutoclearFeatures)
	be.PutUint32(buf[96:], h.RefcountOrder)
	be.PutUint32(buf[100:], v3HeaderLength)
	pos := uint64(v3HeaderLength)
	if h.BackingFormat != "" {
		n := uint64(len(h.BackingFormat))
		padded := (n + 7) &^ 7
		if pos+8+padded+8 > clusterSize {
			return nil, errors.New("qcow2: backing format name too long")
		}
		be.PutUint32(buf[pos:], extBackingFormat)
		be.PutUint32(buf[pos+4:], uint32(n))
		copy(buf[pos+8:], h.BackingFormat)
		pos += 8 + padded
	}
	pos += 8 // end-of-extensions marker (already zero)
	if h.BackingFile != "" {
		n := uint64(len(h.BackingFile))
		if n > maxBackingName || pos+n > clusterSize {
			return nil, errors.New("qcow2: backing file name too long")
		}
		copy(buf[pos:], h.BackingFile)
		be.PutUint64(buf[8:], pos)
		be.PutUint32(buf[16:], uint32(n))
	}
	return buf, nil
}
