package kvm

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Offsets into struct kvm_run (x86-64). The exit union starts at 32.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runIfFlag        = 13
	runExitUnion     = 32
	// RunExitUnionSize is the size of kvm_run's exit union.
	RunExitUnionSize = 256
)

// Run is a vCPU's shared struct kvm_run, mapped from the vCPU fd. The
// kernel writes it during KVM_RUN; read it only on the vCPU's own thread
// between runs, except for SetImmediateExit, which any thread may call.
type Run struct {
	mem []byte
}

// ExitReason returns run->exit_reason.
func (r *Run) ExitReason() uint32 { return binary.LittleEndian.Uint32(r.mem[runExitReason:]) }

// SetImmediateExit sets run->immediate_exit, making the next (or current,
// once a signal arrives) KVM_RUN return EINTR at once.
func (r *Run) SetImmediateExit(on bool) {
	var v uint32
	if on {
		v = 1
	}
	// immediate_exit is a byte; store the aligned word holding it and its
	// neighbours (request_interrupt_window and padding, which we keep 0).
	p := (*uint32)(unsafe.Pointer(&r.mem[0]))
	atomic.StoreUint32(p, v<<(8*runImmediateExit))
}

// union returns the exit union.
func (r *Run) union() []byte { return r.mem[runExitUnion : runExitUnion+RunExitUnionSize] }

// IOExit describes a KVM_EXIT_IO.
type IOExit struct {
	Direction uint8 // ExitIOIn or ExitIOOut
	Size      uint8 // access width: 1, 2 or 4
	Port      uint16
	Count     uint32 // repetitions (string I/O)
	// Data aliases the Count*Size bytes in the run page: filled by the
	// VMM for IN, written by the guest for OUT.
	Data []byte
}

// IO decodes the exit union as KVM_EXIT_IO.
func (r *Run) IO() (IOExit, error) {
	u := r.union()
	e := IOExit{Direction: u[0], Size: u[1], Port: binary.LittleEndian.Uint16(u[2:]), Count: binary.LittleEndian.Uint32(u[4:])}
	off := binary.LittleEndian.Uint64(u[8:])
	n := uint64(e.Size) * uint64(e.Count)
	if off >= uint64(len(r.mem)) || n > uint64(len(r.mem))-off {
		return e, fmt.Errorf("KVM_EXIT_IO data %#x+%#x outside the %#x-byte run page", off, n, len(r.mem))
	}
	e.Data = r.mem[off : off+n : off+n]
	return e, nil
}

// MMIOExit describes a KVM_EXIT_MMIO.
type MMIOExit struct {
	PhysAddr uint64
	// Data aliases the access's bytes in the run page (len = access width).
	Data    []byte
	IsWrite bool
}

// MMIO decodes the exit union as KVM_EXIT_MMIO.
func (r *Run) MMIO() (MMIOExit, error) {
	u := r.union()
	n := binary.LittleEndian.Uint32(u[16:])
	if n > 8 {
		return MMIOExit{}, fmt.Errorf("KVM_EXIT_MMIO length %d exceeds 8", n)
	}
	return MMIOExit{PhysAddr: binary.LittleEndian.Uint64(u[0:]), Data: u[8 : 8+n : 8+n], IsWrite: u[20] != 0}, nil
}

// FailEntry is KVM_EXIT_FAIL_ENTRY's payload.
type FailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
}

// FailEntry decodes the exit union as KVM_EXIT_FAIL_ENTRY.
func (r *Run) FailEntry() FailEntry {
	u := r.union()
	return FailEntry{binary.LittleEndian.Uint64(u[0:]), binary.LittleEndian.Uint32(u[8:])}
}

// InternalError is KVM_EXIT_INTERNAL_ERROR's payload. For suberror
// InternalErrorEmulation with EmulationFlagInstructionBytes, Insn holds
// the bytes of the instruction the kernel could not emulate.
type InternalError struct {
	Suberror uint32
	Data     []uint64
	Insn     []byte
}

// InternalError decodes the exit union as KVM_EXIT_INTERNAL_ERROR.
func (r *Run) InternalError() InternalError {
	u := r.union()
	e := InternalError{Suberror: binary.LittleEndian.Uint32(u[0:])}
	ndata := binary.LittleEndian.Uint32(u[4:])
	if e.Suberror == InternalErrorEmulation {
		// struct { suberror, ndata u32; flags u64; insn_size u8; insn_bytes[15] }
		flags := binary.LittleEndian.Uint64(u[8:])
		if ndata >= 1 && flags&EmulationFlagInstructionBytes != 0 {
			n := int(u[16])
			if n > 15 {
				n = 15
			}
			e.Insn = append([]byte(nil), u[17:17+n]...)
		}
		return e
	}
	if ndata > 16 {
		ndata = 16
	}
	for i := 0; i < int(ndata); i++ {
		e.Data = append(e.Data, binary.LittleEndian.Uint64(u[8+8*i:]))
	}
	return e
}

// SystemEvent is KVM_EXIT_SYSTEM_EVENT's payload.
type SystemEvent struct {
	Type uint32 // SystemEventShutdown, ...
	Data []uint64
}

// SystemEvent decodes the exit union as KVM_EXIT_SYSTEM_EVENT.
func (r *Run) SystemEvent() SystemEvent {
	u := r.union()
	e := SystemEvent{Type: binary.LittleEndian.Uint32(u[0:])}
	ndata := binary.LittleEndian.Uint32(u[4:])
	if ndata > 16 {
		ndata = 16
	}
	for i := 0; i < int(ndata); i++ {
		e.Data = append(e.Data, binary.LittleEndian.Uint64(u[8+8*i:]))
	}
	return e
}

// HardwareExitReason decodes the exit union as KVM_EXIT_UNKNOWN's.
func (r *Run) HardwareExitReason() uint64 { return binary.LittleEndian.Uint64(r.union()[0:]) }

// ExitName names a KVM exit reason for messages.
func ExitName(reason uint32) string {
	names := map[uint32]string{
		ExitUnknown: "KVM_EXIT_UNKNOWN", ExitException: "KVM_EXIT_EXCEPTION", ExitIO: "KVM_EXIT_IO",
		ExitHypercall: "KVM_EXIT_HYPERCALL", ExitDebug: "KVM_EXIT_DEBUG", ExitHLT: "KVM_EXIT_HLT",
		ExitMMIO: "KVM_EXIT_MMIO", ExitIRQWindowOpen: "KVM_EXIT_IRQ_WINDOW_OPEN", ExitShutdown: "KVM_EXIT_SHUTDOWN",
		ExitFailEntry: "KVM_EXIT_FAIL_ENTRY", ExitIntr: "KVM_EXIT_INTR", ExitSetTPR: "KVM_EXIT_SET_TPR",
		ExitTPRAccess: "KVM_EXIT_TPR_ACCESS", ExitNMI: "KVM_EXIT_NMI", ExitInternalError: "KVM_EXIT_INTERNAL_ERROR",
		ExitSystemEvent: "KVM_EXIT_SYSTEM_EVENT", ExitIOAPICEOI: "KVM_EXIT_IOAPIC_EOI",
	}
	if n, ok := names[reason]; ok {
		return n
	}
	return fmt.Sprintf("KVM exit %d", reason)
}
