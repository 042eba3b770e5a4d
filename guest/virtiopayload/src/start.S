/*
 * Entry of the virtio payload. The engine enters here in 64-bit ring 0
 * with RSI = the zero page. Ring 0 is emulated (slow) on PVM hosts, so this
 * does the least it can there: identity-map the low 4 GiB with user-
 * accessible 2 MiB pages (RAM and the virtio-mmio window), load a GDT with
 * ring-3 segments, and iretq to ring 3 with IOPL=3 so the C driver runs at
 * native speed and can still use in/out for COM1 and the ACPI sleep port.
 * Nothing ever returns to ring 0: no IDT, no TSS, interrupts stay off.
 */
	.section .text.start, "ax"
	.code64
	.globl _start
_start:
	cli
	mov	%rsi, %r12			/* zero page, for vp_main */
	lea	boot_stack_top(%rip), %rsp

	/* PML4[0] -> PDPT; PDPT[0..3] -> four page directories. */
	lea	pdpt(%rip), %rax
	or	$7, %rax			/* present, writable, user */
	mov	%rax, pml4(%rip)
	lea	pdpt(%rip), %rdi
	lea	pds(%rip), %rax
	or	$7, %rax
	mov	$4, %ecx
1:	mov	%rax, (%rdi)
	add	$8, %rdi
	add	$4096, %rax
	dec	%ecx
	jnz	1b
	/* 2048 2 MiB pages: 0 .. 4 GiB, present|writable|user|PS. */
	lea	pds(%rip), %rdi
	mov	$0x87, %eax
	mov	$2048, %ecx
2:	mov	%rax, (%rdi)
	add	$8, %rdi
	add	$0x200000, %rax
	dec	%ecx
	jnz	2b

	lgdt	gdt_ptr(%rip)
	lea	pml4(%rip), %rax
	mov	%rax, %cr3
	/* Reload CS from the new GDT with a far return. */
	pushq	$0x10
	lea	3f(%rip), %rax
	push	%rax
	lretq
3:	mov	$0x18, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs

	/* iretq to ring 3: SS, RSP, RFLAGS (IOPL=3, IF=0), CS, RIP. */
	pushq	$0x23
	lea	user_stack_top(%rip), %rax
	push	%rax
	pushq	$0x3002
	pushq	$0x2b
	lea	user_entry(%rip), %rax
	push	%rax
	iretq

user_entry:
	mov	%r12, %rdi
	call	vp_main
4:	jmp	4b

	.section .data
	.balign 16
gdt:
	.quad	0				/* 0x00 null */
	.quad	0				/* 0x08 unused */
	.quad	0x00af9a000000ffff		/* 0x10 kernel code, 64-bit */
	.quad	0x00cf92000000ffff		/* 0x18 kernel data */
	.quad	0x00cff2000000ffff		/* 0x20 user data, DPL 3 (0x23) */
	.quad	0x00affa000000ffff		/* 0x28 user code, 64-bit, DPL 3 (0x2b) */
gdt_end:
	.balign 8
	.word	0
	.word	0
	.word	0
gdt_ptr:
	.word	gdt_end - gdt - 1
	.quad	gdt

	.section .bss
	.balign 4096
pml4:	.skip	4096
pdpt:	.skip	4096
pds:	.skip	4 * 4096
	.skip	4096
boot_stack_top:
	.skip	16384
user_stack_top:
