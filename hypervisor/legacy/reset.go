package legacy

import "sync/atomic"

// ResetControl is the reset control register at port 0xcf9: writing a value
// with bit 2 (RST_CPU) set resets the machine (bit 1 selects a hard reset,
// which is the same thing here). Linux uses it with reboot=pci, and as a
// fallback in its default reboot sequence.
type ResetControl struct {
	reset func()
	value atomic.Uint32
}

// NewResetControl returns the register; reset (if non-nil) runs on the vCPU
// thread that wrote it.
func NewResetControl(reset func()) *ResetControl { return &ResetControl{reset: reset} }

// Read implements bus.Device.
func (r *ResetControl) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = byte(r.value.Load())
	}
}

// Write implements bus.Device.
func (r *ResetControl) Write(offset uint64, data []byte) {
	for _, b := range data {
		r.value.Store(uint32(b &^ 0x04)) // RST_CPU is self-clearing
		if b&0x04 != 0 && r.reset != nil {
			r.reset()
		}
	}
}

// Sink is a port that accepts writes and reads as a constant. Register it
// at POSTPort: Linux writes port 0x80 as an I/O delay (io_delay=0x80) and
// firmware writes POST codes there; claiming it keeps those writes out of
// "unhandled port" logs. The last value written is kept for debugging.
type Sink struct {
	ReadValue byte
	last      atomic.Uint32
}

// Read implements bus.Device.
func (s *Sink) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = s.ReadValue
	}
}

// Write implements bus.Device.
func (s *Sink) Write(offset uint64, data []byte) {
	if len(data) > 0 {
		s.last.Store(uint32(data[len(data)-1]))
	}
}

// Last returns the last byte written.
func (s *Sink) Last() byte { return byte(s.last.Load()) }

// DebugExit is a one-port device for test payloads: writing byte v calls
// exit(v) (isa-debug-exit style). Register it at a port of the engine's
// choosing, only for test guests.
type DebugExit struct {
	exit func(code byte)
}

// NewDebugExit returns the device.
func NewDebugExit(exit func(code byte)) *DebugExit { return &DebugExit{exit: exit} }

// Read implements bus.Device.
func (d *DebugExit) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Write implements bus.Device.
func (d *DebugExit) Write(offset uint64, data []byte) {
	if len(data) > 0 && d.exit != nil {
		d.exit(data[0])
	}
}
