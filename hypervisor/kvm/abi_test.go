package kvm

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestABIAgainstKernelHeaders compiles testdata/abi.c against the host's
// <linux/kvm.h> and checks every struct size, field offset, ioctl number and
// constant the Go side hard-codes.
func TestABIAgainstKernelHeaders(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed: apt-get install gcc linux-libc-dev")
	}
	bin := filepath.Join(t.TempDir(), "abi")
	if out, err := exec.Command("gcc", "-o", bin, "testdata/abi.c").CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("linux/kvm.h")) {
			t.Skip("kernel headers missing: apt-get install linux-libc-dev")
		}
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	kernel := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		kernel[f[0]] = v
	}
	var ev VCPUEvents
	var fpu FPU
	var s Sregs
	want := map[string]uint64{
		"sizeof_kvm_run":                            uint64(runExitUnion + RunExitUnionSize + 16 + 2048),
		"sizeof_kvm_regs":                           uint64(unsafe.Sizeof(Regs{})),
		"sizeof_kvm_sregs":                          uint64(unsafe.Sizeof(Sregs{})),
		"sizeof_kvm_segment":                        uint64(unsafe.Sizeof(Segment{})),
		"sizeof_kvm_dtable":                         uint64(unsafe.Sizeof(DTable{})),
		"sizeof_kvm_fpu":                            uint64(unsafe.Sizeof(FPU{})),
		"sizeof_kvm_msr_entry":                      uint64(unsafe.Sizeof(MSREntry{})),
		"sizeof_kvm_cpuid_entry2":                   uint64(unsafe.Sizeof(CPUIDEntry{})),
		"sizeof_kvm_lapic_state":                    uint64(unsafe.Sizeof(LAPICState{})),
		"sizeof_kvm_mp_state":                       uint64(unsafe.Sizeof(MPState{})),
		"sizeof_kvm_vcpu_events":                    uint64(unsafe.Sizeof(VCPUEvents{})),
		"sizeof_kvm_userspace_memory_region":        uint64(unsafe.Sizeof(UserspaceMemoryRegion{})),
		"sizeof_kvm_irq_level":                      uint64(unsafe.Sizeof(IRQLevel{})),
		"sizeof_kvm_irqchip":                        uint64(unsafe.Sizeof(IRQChip{})),
		"sizeof_kvm_irqfd":                          uint64(unsafe.Sizeof(IRQFD{})),
		"sizeof_kvm_ioeventfd":                      uint64(unsafe.Sizeof(IOEventFD{})),
		"sizeof_kvm_pit_config":                     uint64(unsafe.Sizeof(PITConfig{})),
		"sizeof_kvm_msi":                            uint64(unsafe.Sizeof(MSI{})),
		"off_kvm_run_immediate_exit":                runImmediateExit,
		"off_kvm_run_exit_reason":                   runExitReason,
		"off_kvm_run_if_flag":                       runIfFlag,
		"off_kvm_run_exit_union":                    runExitUnion,
		"off_kvm_run_io_port":                       runExitUnion + 2,
		"off_kvm_run_io_count":                      runExitUnion + 4,
		"off_kvm_run_io_data_offset":                runExitUnion + 8,
		"off_kvm_run_mmio_data":                     runExitUnion + 8,
		"off_kvm_run_mmio_len":                      runExitUnion + 16,
		"off_kvm_run_mmio_is_write":                 runExitUnion + 20,
		"off_kvm_run_emul_flags":                    runExitUnion + 8,
		"off_kvm_run_emul_insn_size":                runExitUnion + 16,
		"off_kvm_run_emul_insn_bytes":               runExitUnion + 17,
		"off_kvm_run_sysev_data":                    runExitUnion + 8,
		"off_kvm_run_internal_data":                 runExitUnion + 8,
		"off_kvm_sregs_cr0":                         uint64(unsafe.Offsetof(s.CR0)),
		"off_kvm_sregs_efer":                        uint64(unsafe.Offsetof(s.EFER)),
		"off_kvm_sregs_interrupt_bitmap":            uint64(unsafe.Offsetof(s.InterruptBitmap)),
		"off_kvm_vcpu_events_sipi_vector":           uint64(unsafe.Offsetof(ev.SIPIVector)),
		"off_kvm_vcpu_events_smi":                   uint64(unsafe.Offsetof(ev.SMI)),
		"off_kvm_vcpu_events_triple_fault":          uint64(unsafe.Offsetof(ev.TripleFaultPending)),
		"off_kvm_vcpu_events_exception_has_payload": uint64(unsafe.Offsetof(ev.ExceptionHasPayload)),
		"off_kvm_vcpu_events_exception_payload":     uint64(unsafe.Offsetof(ev.ExceptionPayload)),
		"off_kvm_fpu_mxcsr":                         uint64(unsafe.Offsetof(fpu.MXCSR)),
		"off_kvm_fpu_xmm":                           uint64(unsafe.Offsetof(fpu.XMM)),
		"KVM_GET_API_VERSION":                       uint64(KVM_GET_API_VERSION),
		"KVM_CREATE_VM":                             uint64(KVM_CREATE_VM),
		"KVM_CHECK_EXTENSION":                       uint64(KVM_CHECK_EXTENSION),
		"KVM_GET_VCPU_MMAP_SIZE":                    uint64(KVM_GET_VCPU_MMAP_SIZE),
		"KVM_GET_SUPPORTED_CPUID":                   uint64(KVM_GET_SUPPORTED_CPUID),
		"KVM_CREATE_VCPU":                           uint64(KVM_CREATE_VCPU),
		"KVM_SET_USER_MEMORY_REGION":                uint64(KVM_SET_USER_MEMORY_REGION),
		"KVM_SET_TSS_ADDR":                          uint64(KVM_SET_TSS_ADDR),
		"KVM_SET_IDENTITY_MAP_ADDR":                 uint64(KVM_SET_IDENTITY_MAP_ADDR),
		"KVM_CREATE_IRQCHIP":                        uint64(KVM_CREATE_IRQCHIP),
		"KVM_IRQ_LINE":                              uint64(KVM_IRQ_LINE),
		"KVM_GET_IRQCHIP":                           uint64(KVM_GET_IRQCHIP),
		"KVM_SET_IRQCHIP":                           uint64(KVM_SET_IRQCHIP),
		"KVM_IRQ_LINE_STATUS":                       uint64(KVM_IRQ_LINE_STATUS),
		"KVM_IRQFD":                                 uint64(KVM_IRQFD),
		"KVM_CREATE_PIT2":                           uint64(KVM_CREATE_PIT2),
		"KVM_IOEVENTFD":                             uint64(KVM_IOEVENTFD),
		"KVM_SIGNAL_MSI":                            uint64(KVM_SIGNAL_MSI),
		"KVM_RUN":                                   uint64(KVM_RUN),
		"KVM_GET_REGS":                              uint64(KVM_GET_REGS),
		"KVM_SET_REGS":                              uint64(KVM_SET_REGS),
		"KVM_GET_SREGS":                             uint64(KVM_GET_SREGS),
		"KVM_SET_SREGS":                             uint64(KVM_SET_SREGS),
		"KVM_GET_MSRS":                              uint64(KVM_GET_MSRS),
		"KVM_SET_MSRS":                              uint64(KVM_SET_MSRS),
		"KVM_SET_SIGNAL_MASK":                       uint64(KVM_SET_SIGNAL_MASK),
		"KVM_GET_FPU":                               uint64(KVM_GET_FPU),
		"KVM_SET_FPU":                               uint64(KVM_SET_FPU),
		"KVM_GET_LAPIC":                             uint64(KVM_GET_LAPIC),
		"KVM_SET_LAPIC":                             uint64(KVM_SET_LAPIC),
		"KVM_SET_CPUID2":                            uint64(KVM_SET_CPUID2),
		"KVM_GET_CPUID2":                            uint64(KVM_GET_CPUID2),
		"KVM_GET_MP_STATE":                          uint64(KVM_GET_MP_STATE),
		"KVM_SET_MP_STATE":                          uint64(KVM_SET_MP_STATE),
		"KVM_GET_VCPU_EVENTS":                       uint64(KVM_GET_VCPU_EVENTS),
		"KVM_SET_VCPU_EVENTS":                       uint64(KVM_SET_VCPU_EVENTS),
		"KVM_GET_TSC_KHZ":                           uint64(KVM_GET_TSC_KHZ),
		"KVM_GET_MSR_INDEX_LIST":                    uint64(KVM_GET_MSR_INDEX_LIST),
		"KVM_CAP_IRQCHIP":                           CapIRQChip,
		"KVM_CAP_USER_MEMORY":                       CapUserMemory,
		"KVM_CAP_SET_TSS_ADDR":                      CapSetTSSAddr,
		"KVM_CAP_PIT2":                              CapPIT2,
		"KVM_CAP_IRQFD":                             CapIRQFD,
		"KVM_CAP_IOEVENTFD":                         CapIOEventFD,
		"KVM_CAP_SET_IDENTITY_MAP_ADDR":             CapSetIdentityMapAddr,
		"KVM_CAP_IMMEDIATE_EXIT":                    CapImmediateExit,
		"KVM_CAP_MP_STATE":                          CapMPState,
		"KVM_CAP_VCPU_EVENTS":                       CapVCPUEvents,
		"KVM_CAP_SIGNAL_MSI":                        CapSignalMSI,
		"KVM_CAP_GET_TSC_KHZ":                       CapGetTSCKHz,
		"KVM_CAP_READONLY_MEM":                      CapReadonlyMem,
		"KVM_CAP_SPLIT_IRQCHIP":                     CapSplitIRQChip,
		"KVM_CAP_MAX_VCPUS":                         CapMaxVCPUs,
		"KVM_CAP_NR_VCPUS":                          CapNrVCPUs,
		"KVM_CAP_NR_MEMSLOTS":                       CapNrMemslots,
		"KVM_EXIT_IO":                               ExitIO,
		"KVM_EXIT_MMIO":                             ExitMMIO,
		"KVM_EXIT_HLT":                              ExitHLT,
		"KVM_EXIT_SHUTDOWN":                         ExitShutdown,
		"KVM_EXIT_FAIL_ENTRY":                       ExitFailEntry,
		"KVM_EXIT_INTERNAL_ERROR":                   ExitInternalError,
		"KVM_EXIT_SYSTEM_EVENT":                     ExitSystemEvent,
		"KVM_EXIT_INTR":                             ExitIntr,
		"KVM_INTERNAL_ERROR_EMULATION":              InternalErrorEmulation,
		"KVM_MP_STATE_UNINITIALIZED":                MPStateUninitialized,
		"KVM_MP_STATE_HALTED":                       MPStateHalted,
		"KVM_IOEVENTFD_FLAG_DATAMATCH":              IOEventFDFlagDatamatch,
		"KVM_IOEVENTFD_FLAG_PIO":                    IOEventFDFlagPIO,
		"KVM_IOEVENTFD_FLAG_DEASSIGN":               IOEventFDFlagDeassign,
	}
	for name, w := range want {
		k, ok := kernel[name]
		if !ok {
			t.Errorf("%s: not printed by abi.c", name)
			continue
		}
		if k != w {
			t.Errorf("%s = %#x in Go, %#x in the kernel headers", name, w, k)
		}
	}
}

// TestIoctlNumbersFromReference checks a few numbers against the values
// quoted in kvm-vmm.md, independent of the C headers.
func TestIoctlNumbersFromReference(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, 0x4020AE46},
		{"KVM_SET_IDENTITY_MAP_ADDR", KVM_SET_IDENTITY_MAP_ADDR, 0x4008AE48},
		{"KVM_CREATE_PIT2", KVM_CREATE_PIT2, 0x4040AE77},
		{"KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID, 0xC008AE05},
		{"KVM_SET_CPUID2", KVM_SET_CPUID2, 0x4008AE90},
		{"KVM_SET_MSRS", KVM_SET_MSRS, 0x4008AE89},
		{"KVM_SET_FPU", KVM_SET_FPU, 0x41A0AE8D},
		{"KVM_SET_REGS", KVM_SET_REGS, 0x4090AE82},
		{"KVM_SET_SREGS", KVM_SET_SREGS, 0x4138AE84},
		{"KVM_GET_LAPIC", KVM_GET_LAPIC, 0x8400AE8E},
		{"KVM_SET_LAPIC", KVM_SET_LAPIC, 0x4400AE8F},
		{"KVM_IRQ_LINE", KVM_IRQ_LINE, 0x4008AE61},
		{"KVM_IRQFD", KVM_IRQFD, 0x4020AE76},
		{"KVM_IOEVENTFD", KVM_IOEVENTFD, 0x4040AE79},
		{"KVM_RUN", KVM_RUN, 0xAE80},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}
