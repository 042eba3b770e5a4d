// Package payload generates tiny purpose-built guest "kernels" for testing
// the vsh engine end to end: an ELF64 executable with one PT_LOAD segment
// at 1 MiB whose entry point is a physical address, so the engine's
// builder boots it exactly as it boots an uncompressed Linux vmlinux (64-bit
// mode, RSI = the zero page).
//
// The code is hand-encoded x86-64; every instruction is listed with its
// assembly text (Intel syntax) in program, and the package's tests
// assemble that text with GNU as, where available, and compare the bytes.
// It writes ReadyMarker to COM1 and then acts on the first character of
// the kernel command line (boot_params.hdr.cmd_line_ptr, offset 0x228 of
// the zero page):
//
//	'p'  power off through the ACPI sleep control register (port 0x608, 0x34 = SLP_TYP 5 | SLP_EN)
//	'r'  reboot through the i8042 (0xfe to port 0x64)
//	'e'  echo console input: each line comes back as EchoPrefix + line + "\r\n";
//	     ^D (0x04) powers off as 'p' does. The guest polls the UART.
//	'i'  the same echo, interrupt-driven: the guest programs the 8259 PIC
//	     (vectors 0x20-0x2f, only IRQ 4 unmasked) and the UART's
//	     received-data interrupt, and halts until input arrives, so an idle
//	     echo guest costs the host nothing and the UART -> PIC -> LAPIC
//	     (LINT0 ExtINT) interrupt path is exercised
//	'h'  (and anything else) idle: cli; hlt forever
//
// The guest runs in ring 0, which a PVM host emulates about 1000 times
// slower than native, so the code does as little as possible: the marker
// is one `rep outsb`, and the echo loop is a few instructions around two
// port reads. It never touches memory beyond its own page and the command
// line, so a guest that runs it keeps almost no RAM resident.
package payload

import (
	"encoding/binary"
	"fmt"
	"os"
)

// LoadAddr is the guest-physical address of the payload's only segment
// (the boot protocol's 1 MiB), and EntryOffset where its code starts in it.
const (
	LoadAddr    = 0x100000
	EntryOffset = 0x80
)

// ReadyMarker is the first thing the payload writes to COM1, at every boot.
const ReadyMarker = "VSH-PAYLOAD-READY"

// EchoPrefix starts every line the echo mode writes back.
const EchoPrefix = "echo: "

// Command-line first characters that select a mode.
const (
	ModePoweroff = 'p'
	ModeReboot   = 'r'
	ModeEcho     = 'e'
	ModeIRQEcho  = 'i'
	ModeIdle     = 'h'
)

// Ports the payload uses.
const (
	portCOM1      = 0x3f8
	portCOM1LSR   = 0x3fd
	portACPISleep = 0x608
	portI8042Cmd  = 0x64
	sleepS5       = 0x34 // SLP_TYP = 5 (bits 2-4) | SLP_EN (bit 5)
	i8042Reset    = 0xfe // pulse the CPU reset line
	zpCmdLinePtr  = 0x228

	// picVectorBase is where the payload puts the 8259's IRQ 0; the IDT
	// covers vectors up to idtEntries-1 (the slave PIC's too).
	picVectorBase = 0x20
	idtEntries    = 0x30
	// bootCS is the code selector a Linux boot-protocol loader enters the
	// kernel with (__BOOT_CS), which the IDT's gates use.
	bootCS = 0x10
)

// StackTop is the top of the stack the interrupt-driven echo mode uses:
// the end of the payload's 4 KiB segment, whose tail is not in the file.
const StackTop = LoadAddr + SegmentSize

// SegmentSize is the payload segment's size in memory.
const SegmentSize = 0x1000

// insn is one instruction (or data item) of the program: its assembly
// text, its bytes, and optionally a label it defines and a relative
// displacement to patch once labels are known.
type insn struct {
	label string // label defined at this instruction's address
	asm   string // Intel-syntax source; "" for data
	code  []byte
	// rel names the label a relative displacement refers to; relSize is
	// 1 (rel8) or 4 (rel32/disp32), and the displacement field is the last
	// relSize bytes of code before relTail trailing bytes.
	rel     string
	relSize int
	relTail int
	// fill computes data that depends on the layout (the IDT); code holds
	// zeros of the right size until then.
	fill func(labels map[string]int) []byte
}

// op is an instruction without relative operands.
func op(asm string, code ...byte) insn { return insn{asm: asm, code: code} }

// jmp8 is a two-byte jump (opcode, rel8) to label.
func jmp8(asm string, opcode byte, label string) insn {
	return insn{asm: asm, code: []byte{opcode, 0}, rel: label, relSize: 1}
}

// ripRel is an instruction whose last four bytes are a RIP-relative
// displacement to label (immediates after it: tail bytes).
func ripRel(asm, label string, tail int, code ...byte) insn {
	return insn{asm: asm, code: code, rel: label, relSize: 4, relTail: tail}
}

func label(name string) insn { return insn{label: name} }

func data(name string, b []byte) insn { return insn{label: name, code: b} }

var (
	marker = []byte(ReadyMarker + "\r\n")
	prefix = []byte(EchoPrefix)
)

// program is the payload's code, in order, starting at the entry point.
var program = []insn{
	// The kernel command line's first character picks the mode.
	op("mov r8d, DWORD PTR [rsi+0x228]", 0x44, 0x8b, 0x86, 0x28, 0x02, 0x00, 0x00), // r8 = boot_params.hdr.cmd_line_ptr
	op("mov bl, BYTE PTR [r8]", 0x41, 0x8a, 0x18),                                  // bl = cmdline[0]
	// The ready marker, in one string-I/O exit.
	op("mov dx, 0x3f8", 0x66, 0xba, 0xf8, 0x03),                                // dx = COM1 data port
	ripRel("lea rsi, [rip+marker]", "marker", 0, 0x48, 0x8d, 0x35, 0, 0, 0, 0), // rsi = marker
	op(fmt.Sprintf("mov ecx, %#x", len(marker)), 0xb9, byte(len(marker)), 0, 0, 0),
	op("rep outsb", 0xf3, 0x6e),                  // write marker to COM1
	op("cmp bl, 0x70", 0x80, 0xfb, ModePoweroff), // 'p'?
	jmp8("je poweroff", 0x74, "poweroff"),
	op("cmp bl, 0x72", 0x80, 0xfb, ModeReboot), // 'r'?
	jmp8("je reboot", 0x74, "reboot"),
	op("cmp bl, 0x65", 0x80, 0xfb, ModeEcho), // 'e'?
	jmp8("je echo", 0x74, "echo"),
	op("cmp bl, 0x69", 0x80, 0xfb, ModeIRQEcho), // 'i'?
	jmp8("je irq_echo", 0x74, "irq_echo"),

	// Idle: halt with interrupts off; the vCPU sleeps in the host kernel.
	label("idle"),
	op("cli", 0xfa),
	op("hlt", 0xf4),
	jmp8("jmp idle", 0xeb, "idle"),

	label("poweroff"),
	op("mov dx, 0x608", 0x66, 0xba, 0x08, 0x06), // ACPI sleep control register
	op("mov al, 0x34", 0xb0, sleepS5),           // SLP_TYP=S5 | SLP_EN
	op("out dx, al", 0xee),
	jmp8("jmp idle", 0xeb, "idle"),

	label("reboot"),
	op("mov al, 0xfe", 0xb0, i8042Reset), // i8042 command: pulse reset
	op("out 0x64, al", 0xe6, portI8042Cmd),
	jmp8("jmp idle", 0xeb, "idle"),

	// Echo: bh is 1 at the start of a line, when the prefix is due; r13
	// is where the shared byte handling (echo_byte) goes back to.
	label("echo"),
	ripRel("lea r13, [rip+echo_loop]", "echo_loop", 0, 0x4c, 0x8d, 0x2d, 0, 0, 0, 0),
	op("mov bh, 0x1", 0xb7, 0x01),
	label("echo_loop"),
	op("mov dx, 0x3fd", 0x66, 0xba, 0xfd, 0x03), // dx = COM1 line status register
	label("wait"),
	op("in al, dx", 0xec),          // poll LSR
	op("test al, 0x1", 0xa8, 0x01), // data ready?
	jmp8("je wait", 0x74, "wait"),
	label("echo_byte"),
	op("mov dx, 0x3f8", 0x66, 0xba, 0xf8, 0x03), // dx = COM1 data port
	op("in al, dx", 0xec),                       // al = received byte
	op("cmp al, 0x4", 0x3c, 0x04),               // ^D powers off
	jmp8("je poweroff", 0x74, "poweroff"),
	op("mov bl, al", 0x88, 0xc3),  // keep the byte
	op("test bh, bh", 0x84, 0xff), // line start?
	jmp8("je put", 0x74, "put"),
	ripRel("lea rsi, [rip+prefix]", "prefix", 0, 0x48, 0x8d, 0x35, 0, 0, 0, 0),
	op(fmt.Sprintf("mov ecx, %#x", len(prefix)), 0xb9, byte(len(prefix)), 0, 0, 0),
	op("rep outsb", 0xf3, 0x6e), // write the prefix
	op("xor bh, bh", 0x30, 0xff),
	label("put"),
	op("mov al, bl", 0x88, 0xd8),
	op("out dx, al", 0xee),        // echo the byte
	op("cmp al, 0xd", 0x3c, 0x0d), // CR ends a line: add LF
	jmp8("je crlf", 0x74, "crlf"),
	op("cmp al, 0xa", 0x3c, 0x0a), // so does LF
	jmp8("jne next", 0x75, "next"),
	op("mov bh, 0x1", 0xb7, 0x01),
	jmp8("jmp next", 0xeb, "next"),
	label("crlf"),
	op("mov al, 0xa", 0xb0, 0x0a),
	op("out dx, al", 0xee),
	op("mov bh, 0x1", 0xb7, 0x01),
	label("next"),
	op("jmp r13", 0x41, 0xff, 0xe5), // back to the mode's loop

	// Interrupt-driven echo: a stack for interrupt frames, an IDT whose
	// vectors 0x20-0x2f (the PIC's) go to irq_handler, the PIC and the
	// UART's receive interrupt; then halt until a byte arrives.
	label("irq_echo"),
	op(fmt.Sprintf("mov esp, %#x", StackTop), 0xbc, StackTop&0xff, StackTop>>8&0xff, StackTop>>16&0xff, StackTop>>24&0xff),
	ripRel("lidt [rip+idtr]", "idtr", 0, 0x0f, 0x01, 0x1d, 0, 0, 0, 0),
	op("mov al, 0x11", 0xb0, 0x11), // ICW1: edge triggered, cascade, ICW4 follows
	op("out 0x20, al", 0xe6, 0x20),
	op("mov al, 0x20", 0xb0, picVectorBase), // ICW2: IRQ 0-7 are vectors 0x20-0x27
	op("out 0x21, al", 0xe6, 0x21),
	op("mov al, 0x4", 0xb0, 0x04), // ICW3: slave on IRQ 2
	op("out 0x21, al", 0xe6, 0x21),
	op("mov al, 0x1", 0xb0, 0x01), // ICW4: 8086 mode
	op("out 0x21, al", 0xe6, 0x21),
	op("mov al, 0xef", 0xb0, 0xef), // OCW1: mask everything but IRQ 4 (COM1)
	op("out 0x21, al", 0xe6, 0x21),
	op("mov dx, 0x3f9", 0x66, 0xba, 0xf9, 0x03), // COM1 interrupt enable register
	op("mov al, 0x1", 0xb0, 0x01),               // received data available
	op("out dx, al", 0xee),
	op("mov dx, 0x3fc", 0x66, 0xba, 0xfc, 0x03), // COM1 modem control register
	op("mov al, 0x8", 0xb0, 0x08),               // OUT2: connects the UART to its IRQ line
	op("out dx, al", 0xee),
	ripRel("lea r13, [rip+irq_loop]", "irq_loop", 0, 0x4c, 0x8d, 0x2d, 0, 0, 0, 0),
	op("mov bh, 0x1", 0xb7, 0x01),
	label("irq_loop"),
	op("cli", 0xfa), // no interrupt between the check and hlt
	op("mov dx, 0x3fd", 0x66, 0xba, 0xfd, 0x03),
	op("in al, dx", 0xec),
	op("test al, 0x1", 0xa8, 0x01),
	jmp8("jne echo_byte", 0x75, "echo_byte"),
	op("sti", 0xfb), // sti's one-instruction shadow: hlt runs before any interrupt
	op("hlt", 0xf4), // sleep until the UART interrupt
	jmp8("jmp irq_loop", 0xeb, "irq_loop"),

	// The PIC interrupt handler only acknowledges; irq_loop reads the data.
	label("irq_handler"),
	op("push rax", 0x50),
	op("mov al, 0x20", 0xb0, 0x20), // non-specific EOI
	op("out 0x20, al", 0xe6, 0x20),
	op("pop rax", 0x58),
	op("iretq", 0x48, 0xcf),

	// lidt operand: limit, then the IDT's linear (= physical) address.
	{label: "idtr", code: make([]byte, 10), fill: func(l map[string]int) []byte {
		b := make([]byte, 10)
		binary.LittleEndian.PutUint16(b, idtEntries*16-1)
		binary.LittleEndian.PutUint64(b[2:], LoadAddr+EntryOffset+uint64(l["idt"]))
		return b
	}},
	{label: "idt", code: make([]byte, idtEntries*16), fill: func(l map[string]int) []byte {
		b := make([]byte, idtEntries*16)
		handler := uint64(LoadAddr + EntryOffset + l["irq_handler"])
		for v := picVectorBase; v < idtEntries; v++ {
			g := b[v*16:]
			binary.LittleEndian.PutUint16(g[0:], uint16(handler))
			binary.LittleEndian.PutUint16(g[2:], bootCS)
			g[5] = 0x8e // present, DPL 0, 64-bit interrupt gate
			binary.LittleEndian.PutUint16(g[6:], uint16(handler>>16))
			binary.LittleEndian.PutUint32(g[8:], uint32(handler>>32))
		}
		return b
	}},

	data("marker", marker),
	data("prefix", prefix),
}

// assemble lays out program from EntryOffset and patches relative
// displacements; it returns the code and each label's offset in it.
func assemble(prog []insn) ([]byte, map[string]int, error) {
	labels := map[string]int{}
	off := 0
	for _, in := range prog {
		if in.label != "" {
			labels[in.label] = off
		}
		off += len(in.code)
	}
	code := make([]byte, 0, off)
	for _, in := range prog {
		start := len(code)
		if in.fill != nil {
			code = append(code, in.fill(labels)...)
			continue
		}
		code = append(code, in.code...)
		if in.rel == "" {
			continue
		}
		target, ok := labels[in.rel]
		if !ok {
			return nil, nil, fmt.Errorf("payload: undefined label %q", in.rel)
		}
		next := start + len(in.code)
		field := next - in.relTail - in.relSize
		disp := target - next
		switch in.relSize {
		case 1:
			if disp < -128 || disp > 127 {
				return nil, nil, fmt.Errorf("payload: %q: rel8 displacement %d out of range", in.asm, disp)
			}
			code[field] = byte(int8(disp))
		case 4:
			if disp < -1<<31 || disp > 1<<31-1 {
				return nil, nil, fmt.Errorf("payload: %q: rel32 displacement %d out of range", in.asm, disp)
			}
			binary.LittleEndian.PutUint32(code[field:], uint32(int32(disp)))
		}
	}
	return code, labels, nil
}

// ELF returns the payload as an ELF64 x86-64 executable: one PT_LOAD
// segment covering the whole file at LoadAddr, entry LoadAddr+EntryOffset.
func ELF() []byte {
	code, _, err := assemble(program)
	if err != nil {
		// program is a constant of this package; its tests assemble it.
		panic(err)
	}
	img := make([]byte, EntryOffset+len(code))
	copy(img[EntryOffset:], code)
	le := binary.LittleEndian
	// ELF header.
	copy(img, "\x7fELF")
	img[4] = 2                 // ELFCLASS64
	img[5] = 1                 // ELFDATA2LSB
	img[6] = 1                 // EV_CURRENT
	le.PutUint16(img[16:], 2)  // ET_EXEC
	le.PutUint16(img[18:], 62) // EM_X86_64
	le.PutUint32(img[20:], 1)  // EV_CURRENT
	le.PutUint64(img[24:], LoadAddr+EntryOffset)
	le.PutUint64(img[32:], 64) // e_phoff: right after this header
	le.PutUint16(img[52:], 64) // e_ehsize
	le.PutUint16(img[54:], 56) // e_phentsize
	le.PutUint16(img[56:], 1)  // e_phnum
	le.PutUint16(img[58:], 64) // e_shentsize (no sections)
	// Program header: PT_LOAD, RWX, the whole file at LoadAddr.
	ph := img[64:]
	le.PutUint32(ph[0:], 1)         // PT_LOAD
	le.PutUint32(ph[4:], 7)         // PF_R|PF_W|PF_X
	le.PutUint64(ph[8:], 0)         // p_offset
	le.PutUint64(ph[16:], LoadAddr) // p_vaddr
	le.PutUint64(ph[24:], LoadAddr) // p_paddr
	le.PutUint64(ph[32:], uint64(len(img)))
	le.PutUint64(ph[40:], max(uint64(len(img)), SegmentSize))
	le.PutUint64(ph[48:], 0x1000) // p_align
	return img
}

// WriteFile writes the payload ELF to path (mode 0644), for a domain's
// <os><kernel>.
func WriteFile(path string) error {
	if err := os.WriteFile(path, ELF(), 0o644); err != nil {
		return fmt.Errorf("write payload kernel: %w", err)
	}
	return nil
}

// Source returns the program as GNU as input (Intel syntax), the text the
// bytes were encoded from, for review and for the tests' cross-check.
func Source() string {
	_, labels, err := assemble(program)
	if err != nil {
		return "# " + err.Error() + "\n"
	}
	s := ".intel_syntax noprefix\n.text\n"
	for _, in := range program {
		if in.fill != nil {
			in.code = in.fill(labels)
		}
		if in.label != "" {
			s += in.label + ":\n"
		}
		switch {
		case in.asm != "":
			s += "\t" + in.asm + "\n"
		case len(in.code) > 0:
			s += "\t.byte "
			for i, b := range in.code {
				if i > 0 {
					s += ","
				}
				s += fmt.Sprintf("%#x", b)
			}
			s += "\n"
		}
	}
	return s
}
