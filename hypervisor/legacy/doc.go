// Package legacy models the PC platform devices a Linux guest expects
// without firmware: the 16550A UART (serial console), the i8042 keyboard
// controller with a PS/2 keyboard (reset line, and the Ctrl-Alt-Del the
// engine presses to ask the guest to shut down), the CMOS real-time clock and NVRAM, the
// port-0xcf9 reset control register, and sinks for ports that are written
// but need no model (the port-0x80 POST/delay port).
//
// Each device is a bus.Device registered by the engine at the base address
// given here; offsets are relative to that base. Accesses wider than one
// byte are handled byte by byte, as the ISA bus splits them.
//
// Unclaimed ports are the bus's business: bus.Bus reads them as 0xff and
// drops writes, which is what Linux's probes expect from absent hardware.
package legacy

// Standard ISA port bases and sizes, and the interrupt line of COM1.
const (
	COM1Base = 0x3f8
	COM2Base = 0x2f8
	COM3Base = 0x3e8
	COM4Base = 0x2e8
	UARTSize = 8
	COM1IRQ  = 4
	COM2IRQ  = 3

	// I8042Base covers the data port 0x60 through the command/status
	// port 0x64. Port 0x61 (PC speaker / NMI status) inside that range is
	// handled by KVM's in-kernel PIT when it exists; register the i8042
	// as two 1-byte ranges (I8042DataPort, I8042CommandPort) when it does
	// not, or give the speaker port its own model.
	I8042DataPort    = 0x60
	I8042CommandPort = 0x64

	CMOSBase = 0x70
	CMOSSize = 2
	CMOSIRQ  = 8

	ResetControlPort = 0xcf9
	POSTPort         = 0x80
)

// ISA interrupt lines of the i8042's keyboard and AUX (mouse) ports.
const (
	I8042KbdIRQ = 1
	I8042AuxIRQ = 12
)
