package kvm

// Capabilities for KVM_CHECK_EXTENSION (<linux/kvm.h>).
const (
	CapIRQChip            = 0
	CapHLT                = 1
	CapUserMemory         = 3
	CapSetTSSAddr         = 4
	CapNrVCPUs            = 9
	CapNrMemslots         = 10
	CapMPState            = 14
	CapIRQRouting         = 25
	CapIRQFD              = 32
	CapPIT2               = 33
	CapPITState2          = 35
	CapIOEventFD          = 36
	CapSetIdentityMapAddr = 37
	CapAdjustClock        = 39
	CapVCPUEvents         = 41
	CapXSave              = 55
	CapGetTSCKHz          = 61
	CapMaxVCPUs           = 66
	CapSignalMSI          = 77
	CapReadonlyMem        = 81
	CapSplitIRQChip       = 121
	CapImmediateExit      = 136
)

// Exit reasons in Run.ExitReason.
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitSetTPR        = 11
	ExitTPRAccess     = 12
	ExitNMI           = 16
	ExitInternalError = 17
	ExitSystemEvent   = 24
	ExitIOAPICEOI     = 26
)

// I/O directions in Run.IO().Direction.
const (
	ExitIOIn  = 0
	ExitIOOut = 1
)

// Internal error suberrors.
const (
	InternalErrorEmulation            = 1
	InternalErrorSimulEx              = 2
	InternalErrorDeliveryEv           = 3
	InternalErrorUnexpectedExitReason = 4

	// EmulationFlagInstructionBytes says emulation_failure carries the
	// instruction bytes.
	EmulationFlagInstructionBytes = 1
)

// System event types.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
	SystemEventWakeup   = 4
	SystemEventSuspend  = 5
	SystemEventSEVTerm  = 6
)

// MP states (struct kvm_mp_state).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// Memory region flags.
const (
	MemLogDirtyPages = 1 << 0
	MemReadonly      = 1 << 1
)

// IOEVENTFD flags.
const (
	IOEventFDFlagDatamatch = 1 << 0
	IOEventFDFlagPIO       = 1 << 1
	IOEventFDFlagDeassign  = 1 << 2
)

// IRQFD flags.
const (
	IRQFDFlagDeassign = 1 << 0
)

// PIT flags.
const PITSpeakerDummy = 1

// VCPU events flags.
const (
	VCPUEventValidNMIPending = 0x1
	VCPUEventValidSIPIVector = 0x2
	VCPUEventValidShadow     = 0x4
	VCPUEventValidSMM        = 0x8
	VCPUEventValidPayload    = 0x10
)

// Irqchip ids for KVM_GET/SET_IRQCHIP.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// UserspaceMemoryRegion is struct kvm_userspace_memory_region.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// IRQLevel is struct kvm_irq_level.
type IRQLevel struct {
	IRQ   uint32
	Level uint32
}

// IRQChip is struct kvm_irqchip: one chip's state, opaque to us.
type IRQChip struct {
	ChipID uint32
	Pad    uint32
	Chip   [512]byte
}

// IRQFD is struct kvm_irqfd.
type IRQFD struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	Pad        [16]byte
}

// IOEventFD is struct kvm_ioeventfd.
type IOEventFD struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	Pad       [36]byte
}

// PITConfig is struct kvm_pit_config.
type PITConfig struct {
	Flags uint32
	Pad   [15]uint32
}

// MSI is struct kvm_msi.
type MSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	Pad       [12]byte
}

// Regs is struct kvm_regs (x86-64 general-purpose registers).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is struct kvm_segment.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	Padding  uint8
}

// DTable is struct kvm_dtable (GDTR/IDTR).
type DTable struct {
	Base    uint64
	Limit   uint16
	Padding [3]uint16
}

// Sregs is struct kvm_sregs (x86 special registers).
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64
}

// FPU is struct kvm_fpu.
type FPU struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	Pad1       uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	Pad2       uint32
}

// MSREntry is struct kvm_msr_entry.
type MSREntry struct {
	Index    uint32
	Reserved uint32
	Data     uint64
}

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	Padding  [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf (Index) matters.
const CPUIDFlagSignificantIndex = 1

// LAPICState is struct kvm_lapic_state: the local APIC's 1 KiB register page.
type LAPICState struct {
	Regs [1024]byte
}

// MPState is struct kvm_mp_state.
type MPState struct {
	State uint32
}

// VCPUEvents is struct kvm_vcpu_events.
type VCPUEvents struct {
	Exception struct {
		Injected     uint8
		Nr           uint8
		HasErrorCode uint8
		Pending      uint8
		ErrorCode    uint32
	}
	Interrupt struct {
		Injected uint8
		Nr       uint8
		Soft     uint8
		Shadow   uint8
	}
	NMI struct {
		Injected uint8
		Pending  uint8
		Masked   uint8
		Pad      uint8
	}
	SIPIVector uint32
	Flags      uint32
	SMI        struct {
		SMM          uint8
		Pending      uint8
		SMMInsideNMI uint8
		LatchedInit  uint8
	}
	TripleFaultPending  uint8
	Reserved            [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}
