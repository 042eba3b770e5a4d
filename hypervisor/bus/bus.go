// Package bus routes guest port-I/O and MMIO accesses to device models and
// defines how devices raise interrupts. A device sees only the interfaces
// here and the guest memory it is handed; the device manager in the engine
// assigns every address range and interrupt line.
package bus

import (
	"fmt"
	"sort"
	"sync"
)

// Device handles guest accesses to one address range. offset is relative to
// the start of the range the device was registered at; len(data) is the
// access width (1, 2, 4 or 8). Read fills data; Write consumes it.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// Interrupt is one interrupt line as a device sees it.
type Interrupt interface {
	// Trigger raises an edge-triggered interrupt.
	Trigger() error
	// SetLevel drives a level-triggered line high or low.
	SetLevel(high bool) error
}

// Bus maps address ranges to devices. One Bus is used for I/O ports and one
// for MMIO. Registration happens while the VM is built; lookups are
// concurrent from all vCPU threads.
type Bus struct {
	mu      sync.RWMutex
	entries []entry // sorted by base
}

type entry struct {
	base, size uint64
	name       string
	dev        Device
}

// Register maps [base, base+size) to dev. Overlapping ranges are an error.
func (b *Bus) Register(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("register %s: invalid range %#x+%#x", name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.entries {
		if base < e.base+e.size && e.base < base+size {
			return fmt.Errorf("register %s at %#x+%#x: overlaps %s at %#x+%#x", name, base, size, e.name, e.base, e.size)
		}
	}
	b.entries = append(b.entries, entry{base, size, name, dev})
	sort.Slice(b.entries, func(i, j int) bool { return b.entries[i].base < b.entries[j].base })
	return nil
}

// lookup returns the device covering addr and the offset into its range.
func (b *Bus) lookup(addr uint64) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base+b.entries[i].size > addr })
	if i < len(b.entries) && b.entries[i].base <= addr {
		return b.entries[i].dev, addr - b.entries[i].base, true
	}
	return nil, 0, false
}

// Read dispatches a guest read. It reports false when no device is mapped
// at addr; data is then filled with 0xff, as an unclaimed bus reads.
func (b *Bus) Read(addr uint64, data []byte) bool {
	dev, off, ok := b.lookup(addr)
	if !ok {
		for i := range data {
			data[i] = 0xff
		}
		return false
	}
	dev.Read(off, data)
	return true
}

// Write dispatches a guest write. It reports false when no device is mapped
// at addr; the write is then dropped.
func (b *Bus) Write(addr uint64, data []byte) bool {
	dev, off, ok := b.lookup(addr)
	if !ok {
		return false
	}
	dev.Write(off, data)
	return true
}
