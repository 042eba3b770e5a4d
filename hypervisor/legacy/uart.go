package legacy

import (
	"io"
	"sync"

	"vsh/hypervisor/bus"
)

// 16550A register offsets.
const (
	uartRBR = 0 // receive buffer (read), THR (write), DLL with DLAB
	uartIER = 1 // interrupt enable, DLM with DLAB
	uartIIR = 2 // interrupt identification (read), FCR (write)
	uartLCR = 3
	uartMCR = 4
	uartLSR = 5
	uartMSR = 6
	uartSCR = 7
)

// Register bits.
const (
	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmitter holding register empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0f

	iirNoInt    = 0x01
	iirMSI      = 0x00
	iirTHRI     = 0x02
	iirRDI      = 0x04
	iirRLSI     = 0x06
	iirFIFOBits = 0xc0 // "FIFOs enabled" (16550A)

	fcrEnable  = 0x01
	fcrClearRX = 0x02

	lcrDLAB = 0x80

	mcrDTR      = 0x01
	mcrRTS      = 0x02
	mcrOUT1     = 0x04
	mcrOUT2     = 0x08
	mcrLoopback = 0x10
	mcrMask     = 0x1f

	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrBI   = 0x10
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrDCTS = 0x01
	msrDDSR = 0x02
	msrTERI = 0x04
	msrDDCD = 0x08
	msrCTS  = 0x10
	msrDSR  = 0x20
	msrRI   = 0x40
	msrDCD  = 0x80
	msrHost = msrDCD | msrDSR | msrCTS // a host is always "connected"
)

// DefaultInputBuffer is the receive buffer size used when NewUART is given
// 0: room for a typed command line or a pasted script, bounded so a guest
// that never reads cannot make the VMM grow without limit.
const DefaultInputBuffer = 64 << 10

// UART is a 16550A serial port. The guest drives it through Read and Write
// (bus.Device); the VMM feeds console input with Input and receives the
// guest's output on the io.Writer given to NewUART. Transmission is
// instantaneous: THR is always empty again by the time the guest looks.
//
// The interrupt output is modelled as the level the chip drives: the line
// is high while any enabled interrupt is pending, and SetLevel is called on
// every change, so both edge-triggered (ISA, PIC/IOAPIC edge) and
// level-triggered routing see what real hardware would produce.
type UART struct {
	mu  sync.Mutex
	out io.Writer
	irq bus.Interrupt

	rx    []byte // received, not yet read by the guest
	rxMax int

	ier, lcr, mcr, scr byte
	dll, dlm           byte
	fifo               bool
	lsrErr             byte // OE/BI bits latched until LSR is read
	msrDelta           byte // delta bits of MSR, cleared when MSR is read
	msrPrev            byte
	thriPending        bool // THR-empty interrupt not yet acknowledged
	line               bool // last level driven on irq
	dropped            uint64
	writeErr           error
}

// NewUART returns a UART writing guest output to out (nil discards it) and
// raising irq (nil: no interrupts, the guest must poll). inputBuffer bounds
// the receive buffer; 0 selects DefaultInputBuffer.
func NewUART(out io.Writer, irq bus.Interrupt, inputBuffer int) *UART {
	if out == nil {
		out = io.Discard
	}
	if inputBuffer <= 0 {
		inputBuffer = DefaultInputBuffer
	}
	u := &UART{out: out, irq: irq, rxMax: inputBuffer, dll: 0x0c /* 9600 baud */, lcr: 0x03 /* 8N1 */}
	u.msrPrev = u.msr()
	return u
}

// Input queues bytes typed on the console for the guest to read. It accepts
// as many as fit in the buffer and returns that count; the caller may retry
// the rest later (when the guest has read some) or drop it.
func (u *UART) Input(p []byte) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := min(len(p), u.rxMax-len(u.rx))
	if n < len(p) {
		u.dropped += uint64(len(p) - n)
	}
	if n <= 0 {
		return 0
	}
	u.rx = append(u.rx, p[:n]...)
	u.updateIRQ()
	return n
}

// InputSpace returns how many more bytes Input would accept now.
func (u *UART) InputSpace() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rxMax - len(u.rx)
}

// Dropped returns how many input bytes were refused because the buffer was
// full.
func (u *UART) Dropped() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dropped
}

// WriteErr returns the first error the output writer returned, if any; the
// guest never sees output errors (its bytes are then discarded).
func (u *UART) WriteErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.writeErr
}

// Read implements bus.Device.
func (u *UART) Read(offset uint64, data []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := range data {
		data[i] = u.readReg(offset + uint64(i))
	}
	u.updateIRQ()
}

// Write implements bus.Device. Output bytes go to the writer while the
// lock is held, so the guest's output stays in order across vCPUs; the
// writer should not block for long.
func (u *UART) Write(offset uint64, data []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, b := range data {
		u.writeReg(offset+uint64(i), b)
	}
	u.updateIRQ()
}

func (u *UART) readReg(reg uint64) byte {
	dlab := u.lcr&lcrDLAB != 0
	switch reg {
	case uartRBR:
		if dlab {
			return u.dll
		}
		if len(u.rx) == 0 {
			return 0
		}
		b := u.rx[0]
		u.rx = u.rx[1:]
		if len(u.rx) == 0 {
			u.rx = nil // let the backing array go
		}
		return b
	case uartIER:
		if dlab {
			return u.dlm
		}
		return u.ier
	case uartIIR:
		id := u.pending()
		if id == iirTHRI {
			// Reading IIR while it reports THRE acknowledges it.
			u.thriPending = false
		}
		if u.fifo {
			id |= iirFIFOBits
		}
		return id
	case uartLCR:
		return u.lcr
	case uartMCR:
		return u.mcr
	case uartLSR:
		v := u.lsr()
		u.lsrErr = 0
		return v
	case uartMSR:
		v := u.msr() | u.msrDelta
		u.msrDelta = 0
		return v
	case uartSCR:
		return u.scr
	}
	return 0xff
}

func (u *UART) writeReg(reg uint64, b byte) {
	dlab := u.lcr&lcrDLAB != 0
	switch reg {
	case uartRBR:
		if dlab {
			u.dll = b
			return
		}
		if u.mcr&mcrLoopback != 0 {
			// Loopback: the byte comes straight back to the receiver.
			if len(u.rx) < u.rxMax {
				u.rx = append(u.rx, b)
			} else {
				u.lsrErr |= lsrOE
			}
		} else if u.writeErr == nil {
			if _, err := u.out.Write([]byte{b}); err != nil {
				u.writeErr = err
			}
		}
		u.thriPending = true // transmitted at once: THR empty again
	case uartIER:
		if dlab {
			u.dlm = b
			return
		}
		old := u.ier
		u.ier = b & ierMask
		if u.ier&ierTHRI != 0 && old&ierTHRI == 0 {
			// Enabling the THRE interrupt with THR empty raises it
			// (8250 driver's TX-IRQ probe relies on this).
			u.thriPending = true
		}
	case uartIIR: // FCR
		u.fifo = b&fcrEnable != 0
		if b&fcrClearRX != 0 || !u.fifo {
			u.rx = nil
		}
	case uartLCR:
		u.lcr = b
	case uartMCR:
		u.mcr = b & mcrMask
		u.updateMSR()
	case uartLSR:
		// Read-only on real chips (a factory test register); ignore.
	case uartMSR:
		// Read-only.
	case uartSCR:
		u.scr = b
	}
}

// lsr returns the line status register.
func (u *UART) lsr() byte {
	v := byte(lsrTHRE|lsrTEMT) | u.lsrErr
	if len(u.rx) > 0 {
		v |= lsrDR
	}
	return v
}

// msr returns the modem status lines (without delta bits).
func (u *UART) msr() byte {
	if u.mcr&mcrLoopback == 0 {
		return msrHost
	}
	// Loopback wiring: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
	var v byte
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// updateMSR latches delta bits for modem lines that changed.
func (u *UART) updateMSR() {
	now := u.msr()
	ch := now ^ u.msrPrev
	if ch&msrCTS != 0 {
		u.msrDelta |= msrDCTS
	}
	if ch&msrDSR != 0 {
		u.msrDelta |= msrDDSR
	}
	if ch&msrDCD != 0 {
		u.msrDelta |= msrDDCD
	}
	if u.msrPrev&msrRI != 0 && now&msrRI == 0 { // trailing edge of RI
		u.msrDelta |= msrTERI
	}
	u.msrPrev = now
}

// pending returns the IIR interrupt id of the highest-priority enabled
// interrupt, or iirNoInt.
func (u *UART) pending() byte {
	switch {
	case u.ier&ierRLSI != 0 && u.lsrErr != 0:
		return iirRLSI
	case u.ier&ierRDI != 0 && len(u.rx) > 0:
		return iirRDI
	case u.ier&ierTHRI != 0 && u.thriPending:
		return iirTHRI
	case u.ier&ierMSI != 0 && u.msrDelta != 0:
		return iirMSI
	}
	return iirNoInt
}

// updateIRQ drives the interrupt line to match the pending state. With
// MCR.OUT2 clear a PC's UART interrupt output is disconnected (the 8250
// driver sets OUT2 to enable it), except in loopback mode where the line
// is internal.
func (u *UART) updateIRQ() {
	level := u.pending() != iirNoInt && u.mcr&mcrOUT2 != 0 && u.mcr&mcrLoopback == 0
	if level == u.line || u.irq == nil {
		u.line = level
		return
	}
	u.line = level
	_ = u.irq.SetLevel(level) // an engine error here has no guest-visible recovery
}
