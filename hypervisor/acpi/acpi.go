// Package acpi builds the minimal ACPI tables a Linux guest needs to power
// itself off cleanly: an RSDP, an XSDT, a hardware-reduced FADT whose sleep
// control register is an I/O port the VMM watches, a DSDT holding the \_S5
// sleep package and the ISA devices with interrupts (COM1, the i8042
// keyboard, the RTC: Linux maps their IRQs only for declared devices on a
// hardware-reduced platform), and a MADT describing the vCPUs' local APICs and the
// I/O APIC. With these, `poweroff` in the guest ends in a write of
// SLP_TYP(5)|SLP_EN to SleepControlPort instead of a panic or a reset, so the
// VMM can tell a poweroff from a reboot (which stays on the i8042 reset line,
// reboot=k).
//
// The layout follows the ACPI 6.x specification; hardware-reduced mode means
// no PM timer, no GPEs and no SCI, so the tables stay small and the guest's
// ACPI interpreter (slow under nested virtualization) has almost nothing to
// run.
package acpi

import (
	"encoding/binary"
	"fmt"

	"vsh/hypervisor/memory"
)

// SleepControlPort is the I/O port of the FADT's sleep control register.
// The guest writes (SLP_TYP << 2) | SLP_EN there to enter a sleep state;
// S5 (soft off) is the only state the DSDT offers.
const SleepControlPort = 0x608

// SleepStatusPort is the I/O port of the FADT's sleep status register.
const SleepStatusPort = 0x609

// Sleep control register bits (ACPI 6.4 §4.8.3.7).
const (
	SleepTypeShift = 2
	SleepTypeMask  = 0x1c
	SleepEnable    = 0x20
	// SleepTypeS5 is the SLP_TYP value the DSDT's \_S5 package gives.
	SleepTypeS5 = 5
)

// IsPowerOff reports whether a byte written to SleepControlPort asks for S5.
func IsPowerOff(v byte) bool {
	return v&SleepEnable != 0 && (v&SleepTypeMask)>>SleepTypeShift == SleepTypeS5
}

// Fixed addresses: the RSDP must sit in the BIOS area 0xe0000-0xfffff where
// Linux scans for it (it also gets the address in boot_params); the other
// tables follow it.
const (
	RSDPAddr = 0xe0000
	tableEnd = 0x100000
)

// IOAPICAddr and LocalAPICAddr are the standard x86 interrupt controller
// addresses, also used by KVM's in-kernel irqchip.
const (
	IOAPICAddr    = 0xfec00000
	LocalAPICAddr = 0xfee00000
)

// Config describes what the tables announce.
type Config struct {
	// APICIDs lists the local APIC id of each vCPU, in vCPU order.
	APICIDs []uint8
	// IOAPICID is the I/O APIC's id; conventionally the vCPU count.
	IOAPICID uint8
	// VirtioMMIO lists the virtio-mmio windows, declared in the DSDT.
	VirtioMMIO []MMIODevice
}

// MMIODevice is one virtio-mmio window and its interrupt (an I/O APIC
// pin). On the hardware-reduced platform Linux maps an interrupt only for
// a device the firmware declares: a window announced just on the command
// line (virtio_mmio.device=) gets no IRQ and its probe fails with EINVAL.
type MMIODevice struct {
	Base, Size uint64
	IRQ        uint32
}

const (
	headerLen = 36
	oemID     = "VSH   "
	oemTable  = "VSHVM   "
	creatorID = "VSH "
)

// header writes a standard ACPI table header into b (len(b) is the table
// length); the checksum is filled in by finish.
func header(b []byte, sig string, revision byte) {
	copy(b[0:4], sig)
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(b)))
	b[8] = revision
	copy(b[10:16], oemID)
	copy(b[16:24], oemTable)
	binary.LittleEndian.PutUint32(b[24:28], 1) // OEM revision
	copy(b[28:32], creatorID)
	binary.LittleEndian.PutUint32(b[32:36], 1) // creator revision
}

// checksum sets b[at] so that all bytes of b sum to zero.
func checksum(b []byte, at int) {
	b[at] = 0
	var sum byte
	for _, c := range b {
		sum += c
	}
	b[at] = -sum
}

// gas writes a Generic Address Structure for a byte-wide I/O port.
func gasIOPort(b []byte, port uint16) {
	b[0] = 1 // SystemIO
	b[1] = 8 // register bit width
	b[2] = 0 // bit offset
	b[3] = 1 // access size: byte
	binary.LittleEndian.PutUint64(b[4:12], uint64(port))
}

// s5AML is `Name (_S5, Package (4) { 5, 0, 0, 0 })`: NameOp, the name,
// PackageOp, PkgLength 7, NumElements 4, BytePrefix 5, then three ZeroOps.
var s5AML = []byte{0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, SleepTypeS5, 0x00, 0x00, 0x00}

// dsdtAML is the DSDT's body: \_S5, and the PC devices with ISA
// interrupts. On a hardware-reduced platform Linux drives no 8259 and maps
// an ISA interrupt through the IO-APIC only for a device the firmware
// declares, so COM1 (PNP0501), the i8042 keyboard (PNP0303) and the RTC
// (PNP0B00) are declared in \_SB with their ports and IRQ; without them
// their drivers fail to get IRQ 4, 1 and 8.
// The virtio-mmio windows are declared too, as LNRO0005 devices (the ACPI
// id Linux's virtio_mmio driver matches, as Firecracker does).
func dsdtAML(virtio []MMIODevice) []byte {
	devs := append(append(
		amlDevice("COM1", "PNP0501", amlIO(0x3f8, 8), amlIRQ(4)),
		amlDevice("PS2K", "PNP0303", amlIO(0x60, 1), amlIO(0x64, 1), amlIRQ(1))...),
		amlDevice("RTC_", "PNP0B00", amlIO(0x70, 2), amlIRQ(8))...)
	for i, d := range virtio {
		devs = append(devs, amlVirtioDevice(i, d)...)
	}
	scope := append([]byte{0x10}, amlPkg(append([]byte{'_', 'S', 'B', '_'}, devs...))...) // ScopeOp
	return append(append([]byte{}, s5AML...), scope...)
}

// amlVirtioDevice is `Device (VRnn) { Name (_HID, "LNRO0005") Name (_UID,
// n) Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, base,
// size) Interrupt (ResourceConsumer, Edge, ActiveHigh, Shared) { irq } })
// }`.
func amlVirtioDevice(n int, d MMIODevice) []byte {
	body := []byte(fmt.Sprintf("VR%02X", n&0xff))
	body = append(body, 0x08, '_', 'H', 'I', 'D', 0x0d) // NameOp _HID StringPrefix
	body = append(body, "LNRO0005\x00"...)
	body = append(body, 0x08, '_', 'U', 'I', 'D', 0x0a, byte(n)) // NameOp _UID BytePrefix
	rt := []byte{0x86, 0x09, 0x00, 0x01}                         // Memory32Fixed, read-write
	rt = binary.LittleEndian.AppendUint32(rt, uint32(d.Base))
	rt = binary.LittleEndian.AppendUint32(rt, uint32(d.Size))
	rt = append(rt, 0x89, 0x06, 0x00, 0x0b, 0x01) // Extended Interrupt: consumer, edge, high, shared; 1 entry
	rt = binary.LittleEndian.AppendUint32(rt, d.IRQ)
	rt = append(rt, 0x79, 0x00)
	buf := append([]byte{0x0a, byte(len(rt))}, rt...)
	body = append(body, 0x08, '_', 'C', 'R', 'S', 0x11)
	body = append(body, amlPkg(buf)...)
	return append([]byte{0x5b, 0x82}, amlPkg(body)...)
}

// amlPkg prefixes body with its AML PkgLength (which counts itself).
func amlPkg(body []byte) []byte {
	n := len(body) + 1
	if n < 0x40 {
		return append([]byte{byte(n)}, body...)
	}
	n++ // two-byte encoding, up to 4095 bytes
	return append([]byte{0x40 | byte(n&0x0f), byte(n >> 4)}, body...)
}

// amlDevice is `Device (name) { Name (_HID, EisaId (hid)) Name (_CRS,
// ResourceTemplate () { resources }) }`.
func amlDevice(name, hid string, resources ...[]byte) []byte {
	body := []byte(name)
	body = append(body, 0x08, '_', 'H', 'I', 'D', 0x0c) // NameOp _HID DWordPrefix
	body = append(body, eisaID(hid)...)
	var rt []byte
	for _, r := range resources {
		rt = append(rt, r...)
	}
	rt = append(rt, 0x79, 0x00)                         // End Tag (checksum 0: not checked)
	buf := append([]byte{0x0a, byte(len(rt))}, rt...)   // BufferSize as BytePrefix
	body = append(body, 0x08, '_', 'C', 'R', 'S', 0x11) // NameOp _CRS BufferOp
	body = append(body, amlPkg(buf)...)
	return append([]byte{0x5b, 0x82}, amlPkg(body)...) // DeviceOp
}

// eisaID compresses a 7-character PNP ID ("PNP0501") into the 4 bytes of
// ASL's EisaId: three 5-bit letters big-endian, then four hex digits.
func eisaID(id string) []byte {
	v := uint16(id[0]-0x40)<<10 | uint16(id[1]-0x40)<<5 | uint16(id[2]-0x40)
	hex := func(c byte) byte {
		if c >= 'A' {
			return c - 'A' + 10
		}
		return c - '0'
	}
	return []byte{byte(v >> 8), byte(v), hex(id[3])<<4 | hex(id[4]), hex(id[5])<<4 | hex(id[6])}
}

// amlIO is a 16-bit-decode I/O port descriptor for n ports at base.
func amlIO(base uint16, n byte) []byte {
	return []byte{0x47, 0x01, byte(base), byte(base >> 8), byte(base), byte(base >> 8), 0x01, n}
}

// amlIRQ is an IRQNoFlags descriptor (edge, active high) for one ISA IRQ.
func amlIRQ(irq uint) []byte {
	mask := uint16(1) << irq
	return []byte{0x22, byte(mask), byte(mask >> 8)}
}

// DSDT returns the Differentiated System Description Table, declaring the
// given virtio-mmio windows.
func DSDT(virtio ...MMIODevice) []byte {
	aml := dsdtAML(virtio)
	b := make([]byte, headerLen+len(aml))
	header(b, "DSDT", 2)
	copy(b[headerLen:], aml)
	checksum(b, 9)
	return b
}

// FADT returns a hardware-reduced Fixed ACPI Description Table (revision 6,
// 276 bytes) pointing at the DSDT.
func FADT(dsdtAddr uint64) []byte {
	b := make([]byte, 276)
	header(b, "FACP", 6)
	binary.LittleEndian.PutUint32(b[40:44], uint32(dsdtAddr))
	// IAPC_BOOT_ARCH: legacy devices and an 8042 are present (Linux skips
	// probing the i8042 otherwise), no VGA, no MSI, no CMOS RTC problems.
	binary.LittleEndian.PutUint16(b[109:111], 1<<0|1<<1|1<<2)
	const (
		flagWBINVD    = 1 << 0
		flagPwrButton = 1 << 4 // power button is a control method (none here)
		flagSlpButton = 1 << 5
		flagHWReduced = 1 << 20
	)
	binary.LittleEndian.PutUint32(b[112:116], flagWBINVD|flagPwrButton|flagSlpButton|flagHWReduced)
	b[131] = 4 // FADT minor version (ACPI 6.4)
	binary.LittleEndian.PutUint64(b[140:148], dsdtAddr)
	gasIOPort(b[244:256], SleepControlPort)
	gasIOPort(b[256:268], SleepStatusPort)
	copy(b[268:276], "VSH/KVM ") // hypervisor vendor identity
	checksum(b, 9)
	return b
}

// MADT returns the Multiple APIC Description Table.
func MADT(cfg Config) []byte {
	n := headerLen + 8 + 8*len(cfg.APICIDs) + 12 + 10 + 10 + 6
	b := make([]byte, n)
	header(b, "APIC", 5)
	binary.LittleEndian.PutUint32(b[36:40], LocalAPICAddr)
	binary.LittleEndian.PutUint32(b[40:44], 1) // PCAT_COMPAT: dual 8259 present
	off := 44
	for i, id := range cfg.APICIDs {
		e := b[off : off+8]
		e[0], e[1] = 0, 8 // processor local APIC
		e[2] = byte(i)    // ACPI processor UID
		e[3] = id
		binary.LittleEndian.PutUint32(e[4:8], 1) // enabled
		off += 8
	}
	e := b[off : off+12]
	e[0], e[1], e[2] = 1, 12, cfg.IOAPICID // I/O APIC
	binary.LittleEndian.PutUint32(e[4:8], IOAPICAddr)
	binary.LittleEndian.PutUint32(e[8:12], 0) // GSI base
	off += 12
	// ISA IRQ 0 (the PIT) is wired to I/O APIC pin 2, as on every PC and in
	// KVM's irqchip; IRQ 9 is level-triggered, active high (SCI convention).
	for _, o := range []struct {
		src   byte
		gsi   uint32
		flags uint16
	}{{0, 2, 0}, {9, 9, 0xd}} {
		e := b[off : off+10]
		e[0], e[1], e[2], e[3] = 2, 10, 0, o.src
		binary.LittleEndian.PutUint32(e[4:8], o.gsi)
		binary.LittleEndian.PutUint16(e[8:10], o.flags)
		off += 10
	}
	e = b[off : off+6]
	e[0], e[1], e[2] = 4, 6, 0xff // local APIC NMI on LINT1 of all processors
	binary.LittleEndian.PutUint16(e[3:5], 0)
	e[5] = 1
	checksum(b, 9)
	return b
}

// XSDT returns the Extended System Description Table listing the given
// table addresses.
func XSDT(tables ...uint64) []byte {
	b := make([]byte, headerLen+8*len(tables))
	header(b, "XSDT", 1)
	for i, t := range tables {
		binary.LittleEndian.PutUint64(b[headerLen+8*i:], t)
	}
	checksum(b, 9)
	return b
}

// RSDP returns the 36-byte ACPI 2.0+ Root System Description Pointer.
func RSDP(xsdtAddr uint64) []byte {
	b := make([]byte, 36)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], oemID)
	b[15] = 2 // revision: ACPI 2.0+
	binary.LittleEndian.PutUint32(b[20:24], 36)
	binary.LittleEndian.PutUint64(b[24:32], xsdtAddr)
	checksum(b[:20], 8)
	checksum(b, 32)
	return b
}

// Write lays the tables out in guest memory from RSDPAddr and returns the
// RSDP's address (for boot_params.acpi_rsdp_addr).
func Write(mem *memory.Guest, cfg Config) (uint64, error) {
	if len(cfg.APICIDs) == 0 {
		return 0, fmt.Errorf("write ACPI tables: no vCPUs")
	}
	align := func(a uint64) uint64 { return (a + 15) &^ 15 }
	addr := uint64(RSDPAddr) + 64 // room for the RSDP
	dsdtAddr := addr
	dsdt := DSDT(cfg.VirtioMMIO...)
	addr = align(addr + uint64(len(dsdt)))
	fadtAddr := addr
	fadt := FADT(dsdtAddr)
	addr = align(addr + uint64(len(fadt)))
	madtAddr := addr
	madt := MADT(cfg)
	addr = align(addr + uint64(len(madt)))
	xsdtAddr := addr
	xsdt := XSDT(fadtAddr, madtAddr)
	addr = align(addr + uint64(len(xsdt)))
	if addr > tableEnd {
		return 0, fmt.Errorf("write ACPI tables: %d vCPUs do not fit below 1 MiB", len(cfg.APICIDs))
	}
	for _, t := range []struct {
		at uint64
		b  []byte
	}{{RSDPAddr, RSDP(xsdtAddr)}, {dsdtAddr, dsdt}, {fadtAddr, fadt}, {madtAddr, madt}, {xsdtAddr, xsdt}} {
		if err := mem.WriteAt(t.b, t.at); err != nil {
			return 0, fmt.Errorf("write ACPI tables: %w", err)
		}
	}
	return RSDPAddr, nil
}
