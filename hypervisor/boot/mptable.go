package boot

import (
	"encoding/binary"
	"fmt"

	"vsh/hypervisor/memory"
)

// MP specification 1.4 structures (Intel MultiProcessor Specification).
const (
	mpfSize        = 16
	mpcHeaderSize  = 44
	mpProcSize     = 20
	mpEntrySize    = 8
	mpProcessor    = 0
	mpBus          = 1
	mpIOAPIC       = 2
	mpIOInterrupt  = 3
	mpLocalInt     = 4
	mpIntINT       = 0
	mpIntNMI       = 1
	mpIntExtINT    = 3
	cpuEnabled     = 1
	cpuBootstrap   = 2
	lapicVersion   = 0x14
	ioapicVersion  = 0x11
	cpuSignature   = 0x600 // family 6
	cpuFeatureFPU  = 1 << 0
	cpuFeatureAPIC = 1 << 9

	// IOAPICPins is the number of I/O APIC inputs (GSIs 0-23), as KVM's
	// in-kernel IOAPIC has.
	IOAPICPins = 24
	// MaxMPCPUs is the most vCPUs the MP table describes: APIC ids are 8
	// bits, 0xff is broadcast, and the I/O APIC takes the id after the
	// last vCPU.
	MaxMPCPUs = 254
)

// MPTable returns the MP floating pointer followed by the configuration
// table, for a table placed at addr, with one processor entry per vCPU
// carrying apicIDs[i] (vCPU 0 is the bootstrap processor; use the same ids
// as CPUID, see APICIDs). It describes one ISA bus, an I/O APIC at
// IOAPICAddr whose id follows the highest APIC id, I/O interrupt entries
// mapping bus IRQ i to I/O APIC pin i for all 24 pins (KVM's default GSI
// routing is the identity), and LINT0 as ExtINT and LINT1 as NMI on every
// local APIC.
func MPTable(addr uint64, apicIDs []uint32) ([]byte, error) {
	nvcpus := len(apicIDs)
	if nvcpus < 1 || nvcpus > MaxMPCPUs {
		return nil, fmt.Errorf("MP table: %d vCPUs (supported 1-%d)", nvcpus, MaxMPCPUs)
	}
	maxID := uint32(0)
	seen := make(map[uint32]bool, nvcpus)
	for _, id := range apicIDs {
		if seen[id] {
			return nil, fmt.Errorf("MP table: APIC id %d used twice", id)
		}
		seen[id] = true
		maxID = max(maxID, id)
	}
	if maxID >= MaxMPCPUs {
		return nil, fmt.Errorf("MP table: APIC id %d does not fit (ids 0-%d, the next one is the I/O APIC's)", maxID, MaxMPCPUs-1)
	}
	le := binary.LittleEndian
	var t []byte // configuration table, header first
	t = append(t, make([]byte, mpcHeaderSize)...)
	for i := 0; i < nvcpus; i++ {
		e := make([]byte, mpProcSize)
		e[0] = mpProcessor
		e[1] = byte(apicIDs[i])
		e[2] = lapicVersion
		e[3] = cpuEnabled
		if i == 0 {
			e[3] |= cpuBootstrap
		}
		le.PutUint32(e[4:], cpuSignature)
		le.PutUint32(e[8:], cpuFeatureFPU|cpuFeatureAPIC)
		t = append(t, e...)
	}
	t = append(t, mpBus, 0, 'I', 'S', 'A', ' ', ' ', ' ')
	ioapicID := byte(maxID + 1)
	io := []byte{mpIOAPIC, ioapicID, ioapicVersion, 1, 0, 0, 0, 0}
	le.PutUint32(io[4:], IOAPICAddr)
	t = append(t, io...)
	for pin := 0; pin < IOAPICPins; pin++ {
		// Flags 0: polarity and trigger conform to the bus (ISA: edge,
		// active high).
		t = append(t, mpIOInterrupt, mpIntINT, 0, 0, 0, byte(pin), ioapicID, byte(pin))
	}
	t = append(t, mpLocalInt, mpIntExtINT, 0, 0, 0, 0, 0xff, 0)
	t = append(t, mpLocalInt, mpIntNMI, 0, 0, 0, 0, 0xff, 1)

	copy(t[0:], "PCMP")
	le.PutUint16(t[4:], uint16(len(t)))
	t[6] = 4 // spec revision 1.4
	copy(t[8:], "VSH     ")
	copy(t[16:], "000000000000")
	le.PutUint16(t[34:], uint16(nvcpus+1+1+IOAPICPins+2)) // entry count
	le.PutUint32(t[36:], LAPICAddr)
	t[7] = checksum(t)

	f := make([]byte, mpfSize)
	copy(f, "_MP_")
	le.PutUint32(f[4:], uint32(addr+mpfSize))
	f[8] = 1 // length in 16-byte units
	f[9] = 4 // spec revision 1.4
	f[10] = checksum(f)
	out := append(f, t...)
	if len(out) > MPTableMax {
		return nil, fmt.Errorf("MP table: %d bytes exceed the %d reserved for it", len(out), MPTableMax)
	}
	return out, nil
}

// WriteMPTable writes MPTable(MPTableAddr, apicIDs) into guest memory,
// where Linux's scan of the last KiB of base memory finds it.
func WriteMPTable(g *memory.Guest, apicIDs []uint32) error {
	b, err := MPTable(MPTableAddr, apicIDs)
	if err != nil {
		return err
	}
	if err := g.WriteAt(b, MPTableAddr); err != nil {
		return fmt.Errorf("write MP table at %#x: %w", MPTableAddr, err)
	}
	return nil
}

// checksum returns the byte that makes b (with that byte still zero) sum to
// zero modulo 256.
func checksum(b []byte) byte {
	var s byte
	for _, v := range b {
		s += v
	}
	return -s
}
