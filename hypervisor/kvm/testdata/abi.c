/* Prints the kernel ABI facts the Go bindings must match, one "name value"
   per line. Built and run by abi_test.go when gcc and linux headers exist. */
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>

#define S(t) printf("sizeof_%s %zu\n", #t, sizeof(struct t))
#define O(t, f, name) printf("off_%s_%s %zu\n", #t, name, offsetof(struct t, f))
#define I(n) printf("%s %lu\n", #n, (unsigned long)(n))

int main(void) {
	S(kvm_run); S(kvm_regs); S(kvm_sregs); S(kvm_segment); S(kvm_dtable); S(kvm_fpu);
	S(kvm_msr_entry); S(kvm_cpuid_entry2); S(kvm_lapic_state); S(kvm_mp_state);
	S(kvm_vcpu_events); S(kvm_userspace_memory_region); S(kvm_irq_level); S(kvm_irqchip);
	S(kvm_irqfd); S(kvm_ioeventfd); S(kvm_pit_config); S(kvm_msi);
	O(kvm_run, immediate_exit, "immediate_exit"); O(kvm_run, exit_reason, "exit_reason");
	O(kvm_run, if_flag, "if_flag"); O(kvm_run, io, "exit_union");
	O(kvm_run, io.port, "io_port"); O(kvm_run, io.count, "io_count"); O(kvm_run, io.data_offset, "io_data_offset");
	O(kvm_run, mmio.data, "mmio_data"); O(kvm_run, mmio.len, "mmio_len"); O(kvm_run, mmio.is_write, "mmio_is_write");
	O(kvm_run, emulation_failure.flags, "emul_flags"); O(kvm_run, emulation_failure.insn_size, "emul_insn_size");
	O(kvm_run, emulation_failure.insn_bytes, "emul_insn_bytes"); O(kvm_run, system_event.data, "sysev_data");
	O(kvm_run, internal.data, "internal_data");
	O(kvm_sregs, cr0, "cr0"); O(kvm_sregs, efer, "efer"); O(kvm_sregs, interrupt_bitmap, "interrupt_bitmap");
	O(kvm_vcpu_events, sipi_vector, "sipi_vector"); O(kvm_vcpu_events, smi, "smi");
	O(kvm_vcpu_events, triple_fault, "triple_fault"); O(kvm_vcpu_events, exception_has_payload, "exception_has_payload");
	O(kvm_vcpu_events, exception_payload, "exception_payload");
	O(kvm_fpu, mxcsr, "mxcsr"); O(kvm_fpu, xmm, "xmm");
	I(KVM_GET_API_VERSION); I(KVM_CREATE_VM); I(KVM_CHECK_EXTENSION); I(KVM_GET_VCPU_MMAP_SIZE);
	I(KVM_GET_SUPPORTED_CPUID); I(KVM_CREATE_VCPU); I(KVM_SET_USER_MEMORY_REGION); I(KVM_SET_TSS_ADDR);
	I(KVM_SET_IDENTITY_MAP_ADDR); I(KVM_CREATE_IRQCHIP); I(KVM_IRQ_LINE); I(KVM_GET_IRQCHIP); I(KVM_SET_IRQCHIP);
	I(KVM_IRQ_LINE_STATUS); I(KVM_IRQFD); I(KVM_CREATE_PIT2); I(KVM_IOEVENTFD); I(KVM_SIGNAL_MSI);
	I(KVM_RUN); I(KVM_GET_REGS); I(KVM_SET_REGS); I(KVM_GET_SREGS); I(KVM_SET_SREGS); I(KVM_GET_MSRS);
	I(KVM_SET_MSRS); I(KVM_SET_SIGNAL_MASK); I(KVM_GET_FPU); I(KVM_SET_FPU); I(KVM_GET_LAPIC); I(KVM_SET_LAPIC);
	I(KVM_SET_CPUID2); I(KVM_GET_CPUID2); I(KVM_GET_MP_STATE); I(KVM_SET_MP_STATE); I(KVM_GET_VCPU_EVENTS);
	I(KVM_SET_VCPU_EVENTS); I(KVM_GET_TSC_KHZ); I(KVM_GET_MSR_INDEX_LIST);
	I(KVM_CAP_IRQCHIP); I(KVM_CAP_USER_MEMORY); I(KVM_CAP_SET_TSS_ADDR); I(KVM_CAP_PIT2); I(KVM_CAP_IRQFD);
	I(KVM_CAP_IOEVENTFD); I(KVM_CAP_SET_IDENTITY_MAP_ADDR); I(KVM_CAP_IMMEDIATE_EXIT); I(KVM_CAP_MP_STATE);
	I(KVM_CAP_VCPU_EVENTS); I(KVM_CAP_SIGNAL_MSI); I(KVM_CAP_GET_TSC_KHZ); I(KVM_CAP_READONLY_MEM);
	I(KVM_CAP_SPLIT_IRQCHIP); I(KVM_CAP_MAX_VCPUS); I(KVM_CAP_NR_VCPUS); I(KVM_CAP_NR_MEMSLOTS);
	I(KVM_EXIT_IO); I(KVM_EXIT_MMIO); I(KVM_EXIT_HLT); I(KVM_EXIT_SHUTDOWN); I(KVM_EXIT_FAIL_ENTRY);
	I(KVM_EXIT_INTERNAL_ERROR); I(KVM_EXIT_SYSTEM_EVENT); I(KVM_EXIT_INTR);
	I(KVM_INTERNAL_ERROR_EMULATION); I(KVM_MP_STATE_UNINITIALIZED); I(KVM_MP_STATE_HALTED);
	I(KVM_IOEVENTFD_FLAG_DATAMATCH); I(KVM_IOEVENTFD_FLAG_PIO); I(KVM_IOEVENTFD_FLAG_DEASSIGN);
	return 0;
}
