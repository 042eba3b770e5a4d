package boot

import (
	"fmt"
	"sort"
)

// E820 entry types.
const (
	E820RAM      = 1
	E820Reserved = 2
)

// maxE820 is the size of boot_params.e820_table.
const maxE820 = 128

// E820Entry is one entry of the BIOS memory map handed to Linux.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// E820 returns the memory map for guest RAM laid out as ram (typically
// RAMRanges(size), or the regions of a memory.Guest): RAM below EBDAStart,
// [EBDAStart, 1 MiB) reserved for the MP table, BIOS and ACPI areas, then the
// rest of RAM from 1 MiB. The MMIO hole simply has no entry. Adjacent RAM
// ranges are merged.
func E820(ram []Range) ([]E820Entry, error) {
	rs := append([]Range(nil), ram...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	var out []E820Entry
	add := func(start, end uint64, typ uint32) {
		if end <= start {
			return
		}
		if n := len(out); n > 0 && out[n-1].Type == typ && out[n-1].Addr+out[n-1].Size == start {
			out[n-1].Size += end - start
			return
		}
		out = append(out, E820Entry{start, end - start, typ})
	}
	reserved := false
	for _, r := range rs {
		if r.Start+r.Size < r.Start {
			return nil, fmt.Errorf("e820: RAM range %#x+%#x wraps around", r.Start, r.Size)
		}
		add(r.Start, min(r.End(), EBDAStart), E820RAM)
		if !reserved && r.Start < LowReservedEnd {
			add(EBDAStart, LowReservedEnd, E820Reserved)
			reserved = true
		}
		add(max(r.Start, HighMemStart), r.End(), E820RAM)
	}
	if !reserved {
		// No RAM below 1 MiB: the area still holds the MP table and ACPI
		// tables' addresses, so keep it out of the guest's hands.
		out = append([]E820Entry{{EBDAStart, LowReservedEnd - EBDAStart, E820Reserved}}, out...)
	}
	if len(out) > maxE820 {
		return nil, fmt.Errorf("e820: %d entries exceed the zero page's %d", len(out), maxE820)
	}
	return out, nil
}
