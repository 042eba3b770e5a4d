// Package memory is guest physical memory as the engine and its devices see
// it: a set of host mappings at guest-physical addresses, with bounds-checked
// access. Devices are handed a *Guest and never see host pointers outside it,
// so a guest-supplied address can only ever reach guest RAM.
package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrOutOfRange is returned (wrapped) when a guest-physical range is not
// entirely inside one guest RAM region.
var ErrOutOfRange = errors.New("guest address out of range")

// Region is one contiguous block of guest RAM.
type Region struct {
	GPA  uint64 // guest-physical base address
	Host []byte // host mapping; len(Host) is the region size
}

// Guest is guest physical memory: a list of non-overlapping regions.
// Its methods are safe for concurrent use; the bytes themselves are shared
// with the guest, which can change them at any time.
type Guest struct {
	regions []Region
}

// New returns guest memory made of the given regions, which must not overlap.
func New(regions ...Region) (*Guest, error) {
	for i, a := range regions {
		if uint64(len(a.Host)) == 0 {
			return nil, fmt.Errorf("memory region %d at %#x is empty", i, a.GPA)
		}
		if a.GPA+uint64(len(a.Host)) < a.GPA {
			return nil, fmt.Errorf("memory region %d at %#x wraps around", i, a.GPA)
		}
		for j, b := range regions[:i] {
			if a.GPA < b.GPA+uint64(len(b.Host)) && b.GPA < a.GPA+uint64(len(a.Host)) {
				return nil, fmt.Errorf("memory region %d at %#x overlaps region %d at %#x", i, a.GPA, j, b.GPA)
			}
		}
	}
	return &Guest{regions: append([]Region(nil), regions...)}, nil
}

// Regions returns the guest RAM regions.
func (g *Guest) Regions() []Region { return g.regions }

// Size returns the total guest RAM in bytes.
func (g *Guest) Size() uint64 {
	var n uint64
	for _, r := range g.regions {
		n += uint64(len(r.Host))
	}
	return n
}

// Slice returns the host bytes backing [gpa, gpa+n). The range must lie in
// one region. The returned slice aliases guest memory.
func (g *Guest) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range g.regions {
		size := uint64(len(r.Host))
		if gpa >= r.GPA && gpa-r.GPA <= size && n <= size-(gpa-r.GPA) {
			off := gpa - r.GPA
			return r.Host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// ReadAt copies guest memory at gpa into p.
func (g *Guest) ReadAt(p []byte, gpa uint64) error {
	s, err := g.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// WriteAt copies p into guest memory at gpa.
func (g *Guest) WriteAt(p []byte, gpa uint64) error {
	s, err := g.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// Uint16 reads a little-endian uint16 at gpa.
func (g *Guest) Uint16(gpa uint64) (uint16, error) {
	s, err := g.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian uint32 at gpa.
func (g *Guest) Uint32(gpa uint64) (uint32, error) {
	s, err := g.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian uint64 at gpa.
func (g *Guest) Uint64(gpa uint64) (uint64, error) {
	s, err := g.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint16 writes a little-endian uint16 at gpa.
func (g *Guest) PutUint16(gpa uint64, v uint16) error {
	s, err := g.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes a little-endian uint32 at gpa.
func (g *Guest) PutUint32(gpa uint64, v uint32) error {
	s, err := g.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes a little-endian uint64 at gpa.
func (g *Guest) PutUint64(gpa uint64, v uint64) error {
	s, err := g.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}
