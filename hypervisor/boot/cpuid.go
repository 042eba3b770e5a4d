package boot

import (
	"math/bits"
	"sort"

	"vsh/hypervisor"
)

// CPUIDEntry mirrors struct kvm_cpuid_entry2 (without its padding).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
}

// CPUIDFlagSignificantIndex is KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the entry
// applies only to its Index (sub-leaf).
const CPUIDFlagSignificantIndex = 1

// CPUID bits the filter touches.
const (
	cpuid1ECXCX16        = 1 << 13
	cpuid1ECXX2APIC      = 1 << 21
	cpuid1ECXPOPCNT      = 1 << 23
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1ECXHypervisor  = 1 << 31
	cpuid1EDXHTT         = 1 << 28
	kvmLeafBase          = 0x40000000
	kvmLeafLast          = 0x400000ff
	levelTypeSMT         = 1
	levelTypeCore        = 2
	levelTypeDie         = 5
)

// CPUIDOptions selects what the guest may see.
type CPUIDOptions struct {
	// HideHypervisor clears the hypervisor bit (leaf 1 ECX[31]) and drops
	// the KVM leaves 0x40000000-0x400000ff.
	HideHypervisor bool
	// PVM hides what KVM on a PVM host cannot run or emulate in guest
	// ring 0: CMPXCHG16B and POPCNT (leaf 1 ECX bits 13 and 23), x2APIC and
	// the TSC-deadline timer. See this-machine-kvm.md.
	PVM bool
	// HideX2APIC and HideTSCDeadline hide those features individually.
	HideX2APIC      bool
	HideTSCDeadline bool
}

// CPUTopology is a normalized guest topology: every level at least 1.
type CPUTopology struct {
	Sockets, Dies, Cores, Threads int
}

// NormalizeTopology fills zero levels of t: with nothing given, one socket
// holds all nvcpus as cores; otherwise missing levels count 1.
func NormalizeTopology(t hypervisor.Topology, nvcpus int) CPUTopology {
	if t.Sockets == 0 && t.Dies == 0 && t.Cores == 0 && t.Threads == 0 {
		return CPUTopology{1, 1, max(nvcpus, 1), 1}
	}
	one := func(v int) int { return max(v, 1) }
	return CPUTopology{one(t.Sockets), one(t.Dies), one(t.Cores), one(t.Threads)}
}

// shift returns the bits needed for n ids at one level.
func shift(n int) uint32 {
	if n <= 1 {
		return 0
	}
	return uint32(bits.Len(uint(n - 1)))
}

// APICID returns the initial APIC id of vcpu under t: thread, core, die and
// socket numbers packed into bit fields just wide enough for each level, as
// real CPUs (and KVM-based VMMs) number them. vCPUs are numbered threads
// first, then cores, dies and sockets.
func APICID(vcpu int, t CPUTopology) uint32 {
	thread := vcpu % t.Threads
	core := vcpu / t.Threads % t.Cores
	die := vcpu / (t.Threads * t.Cores) % t.Dies
	socket := vcpu / (t.Threads * t.Cores * t.Dies)
	st, sc, sd := shift(t.Threads), shift(t.Cores), shift(t.Dies)
	return uint32(socket)<<(st+sc+sd) | uint32(die)<<(st+sc) | uint32(core)<<st | uint32(thread)
}

// APICIDs returns the initial APIC id of each of nvcpus vCPUs under topo,
// as FilterCPUID reports them. Give the same ids to the MP table and to the
// engine's vCPUs (KVM_CREATE_VCPU's id) so all three agree.
func APICIDs(topo hypervisor.Topology, nvcpus int) []uint32 {
	t := NormalizeTopology(topo, nvcpus)
	ids := make([]uint32, nvcpus)
	for i := range ids {
		ids[i] = APICID(i, t)
	}
	return ids
}

// FilterCPUID returns the CPUID table for one vCPU, starting from the host's
// supported entries (KVM_GET_SUPPORTED_CPUID): the initial APIC id and
// logical-processor count in leaf 1, the hypervisor bit, cores per package in
// leaf 4, x2APIC topology in leaves 0xb and 0x1f (rebuilt from topo), and the
// features opts hides. The input is not modified.
func FilterCPUID(entries []CPUIDEntry, vcpu int, topo hypervisor.Topology, nvcpus int, opts CPUIDOptions) []CPUIDEntry {
	t := NormalizeTopology(topo, nvcpus)
	apicID := APICID(vcpu, t)
	perPkg := t.Threads * t.Cores * t.Dies
	st, sc, sd := shift(t.Threads), shift(t.Cores), shift(t.Dies)
	hideX2 := opts.PVM || opts.HideX2APIC
	hideDeadline := opts.PVM || opts.HideTSCDeadline

	var out []CPUIDEntry
	maxBasic := uint32(0)
	for _, e := range entries {
		if e.Function == 0 {
			maxBasic = e.EAX
		}
	}
	for _, e := range entries {
		switch {
		case e.Function == 1:
			e.EBX = e.EBX&0x0000ffff | apicID<<24 | uint32(min(perPkg, 255))<<16
			if perPkg > 1 {
				e.EDX |= cpuid1EDXHTT
			} else {
				e.EDX &^= cpuid1EDXHTT
			}
			if opts.HideHypervisor {
				e.ECX &^= cpuid1ECXHypervisor
			} else {
				e.ECX |= cpuid1ECXHypervisor
			}
			if opts.PVM {
				e.ECX &^= cpuid1ECXCX16 | cpuid1ECXPOPCNT
			}
			if hideX2 {
				e.ECX &^= cpuid1ECXX2APIC
			}
			if hideDeadline {
				e.ECX &^= cpuid1ECXTSCDeadline
			}
		case e.Function == 4:
			if e.EAX&0x1f == 0 { // no cache at this index
				break
			}
			level := (e.EAX >> 5) & 7
			sharing := t.Threads // L1 and L2 are per core
			if level >= 3 {
				sharing = perPkg
			}
			e.EAX = e.EAX&0x3fff | uint32(sharing-1)<<14 | uint32(t.Cores*t.Dies-1)<<26
		case e.Function == 0xb || e.Function == 0x1f:
			continue // rebuilt below
		case e.Function >= kvmLeafBase && e.Function <= kvmLeafLast:
			if opts.HideHypervisor {
				continue
			}
		}
		out = append(out, e)
	}
	topoLeaf := func(fn uint32, levels []struct {
		typ   uint32
		shift uint32
		count int
	}) {
		for i, l := range levels {
			out = append(out, CPUIDEntry{
				Function: fn, Index: uint32(i), Flags: CPUIDFlagSignificantIndex,
				EAX: l.shift, EBX: uint32(min(l.count, 0xffff)), ECX: l.typ<<8 | uint32(i), EDX: apicID,
			})
		}
		// The terminating invalid level.
		i := uint32(len(levels))
		out = append(out, CPUIDEntry{Function: fn, Index: i, Flags: CPUIDFlagSignificantIndex, ECX: i, EDX: apicID})
	}
	type lvl = struct {
		typ   uint32
		shift uint32
		count int
	}
	if maxBasic >= 0xb {
		topoLeaf(0xb, []lvl{
			{levelTypeSMT, st, t.Threads},
			{levelTypeCore, st + sc + sd, perPkg},
		})
	}
	if maxBasic >= 0x1f {
		topoLeaf(0x1f, []lvl{
			{levelTypeSMT, st, t.Threads},
			{levelTypeCore, st + sc, t.Threads * t.Cores},
			{levelTypeDie, st + sc + sd, perPkg},
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Function != out[j].Function {
			return out[i].Function < out[j].Function
		}
		return out[i].Index < out[j].Index
	})
	return out
}
