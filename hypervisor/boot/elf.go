package boot

import (
	"encoding/binary"
	"fmt"
)

// ELF64 constants for an x86-64 vmlinux.
const (
	elfHeaderSize = 64
	elfPhdrSize   = 56
	elfClass64    = 2
	elfDataLSB    = 1
	elfTypeExec   = 2
	elfMachineX86 = 62
	ptLoad        = 1
	maxPhdrs      = 256
)

// Segment is one PT_LOAD segment of an ELF kernel.
type Segment struct {
	Paddr  uint64 // guest-physical load address
	Data   []byte // file bytes (aliases the input)
	Memsz  uint64 // bytes in memory; [len(Data), Memsz) is zeroed
	Offset uint64 // file offset, for messages
}

// ELFKernel is a parsed uncompressed kernel: its loadable segments and its
// physical entry point.
type ELFKernel struct {
	Entry    uint64
	Segments []Segment
}

// ParseELF checks that data is a little-endian x86-64 ELF64 executable and
// returns its PT_LOAD segments and physical entry point. For a Linux
// vmlinux, e_entry is already physical (phys_startup_64); an entry that
// falls in a segment's virtual range is translated to its physical address.
// Every failure wraps ErrBadKernel.
func ParseELF(data []byte) (*ELFKernel, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ELF kernel: %s: %w", fmt.Sprintf(format, args...), ErrBadKernel)
	}
	if len(data) < elfHeaderSize {
		return nil, bad("file is %d bytes, shorter than an ELF64 header", len(data))
	}
	if string(data[:4]) != "\x7fELF" {
		return nil, bad("no ELF magic")
	}
	if data[4] != elfClass64 || data[5] != elfDataLSB {
		return nil, bad("not a little-endian 64-bit ELF file")
	}
	le := binary.LittleEndian
	if t := le.Uint16(data[16:]); t != elfTypeExec {
		return nil, bad("ELF type %d is not an executable", t)
	}
	if m := le.Uint16(data[18:]); m != elfMachineX86 {
		return nil, bad("ELF machine %d is not x86-64", m)
	}
	entry := le.Uint64(data[24:])
	phoff := le.Uint64(data[32:])
	phentsize := uint64(le.Uint16(data[54:]))
	phnum := uint64(le.Uint16(data[56:]))
	if phnum == 0 || phnum > maxPhdrs {
		return nil, bad("%d program headers (want 1-%d)", phnum, maxPhdrs)
	}
	if phentsize < elfPhdrSize {
		return nil, bad("program header size %d is below %d", phentsize, elfPhdrSize)
	}
	size := uint64(len(data))
	if phoff > size || phnum*phentsize > size-phoff {
		return nil, bad("program headers at %#x run past the end of the file", phoff)
	}
	k := &ELFKernel{Entry: entry}
	entryFound := false
	for i := uint64(0); i < phnum; i++ {
		ph := data[phoff+i*phentsize:]
		if le.Uint32(ph) != ptLoad {
			continue
		}
		off := le.Uint64(ph[8:])
		vaddr := le.Uint64(ph[16:])
		paddr := le.Uint64(ph[24:])
		filesz := le.Uint64(ph[32:])
		memsz := le.Uint64(ph[40:])
		if filesz > memsz {
			return nil, bad("segment %d: file size %#x exceeds memory size %#x", i, filesz, memsz)
		}
		if off > size || filesz > size-off {
			return nil, bad("segment %d: bytes [%#x, +%#x) run past the end of the file", i, off, filesz)
		}
		if paddr+memsz < paddr {
			return nil, bad("segment %d: physical range %#x+%#x wraps around", i, paddr, memsz)
		}
		if memsz == 0 {
			continue
		}
		for j, s := range k.Segments {
			if paddr < s.Paddr+s.Memsz && s.Paddr < paddr+memsz {
				return nil, bad("segment %d at %#x overlaps segment %d at %#x", i, paddr, j, s.Paddr)
			}
		}
		k.Segments = append(k.Segments, Segment{Paddr: paddr, Data: data[off : off+filesz], Memsz: memsz, Offset: off})
		switch {
		case entry >= paddr && entry-paddr < memsz:
			entryFound = true
		case entry >= vaddr && entry-vaddr < memsz && vaddr != paddr && !entryFound:
			k.Entry = paddr + (entry - vaddr)
			entryFound = true
		}
	}
	if len(k.Segments) == 0 {
		return nil, bad("no loadable segments")
	}
	if !entryFound {
		return nil, bad("entry point %#x is outside every loadable segment", entry)
	}
	return k, nil
}

// extent returns the physical range the segments cover.
func (k *ELFKernel) extent() Range {
	lo, hi := ^uint64(0), uint64(0)
	for _, s := range k.Segments {
		lo = min(lo, s.Paddr)
		hi = max(hi, s.Paddr+s.Memsz)
	}
	return Range{lo, hi - lo}
}
