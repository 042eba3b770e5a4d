package legacy

import (
	"errors"
	"sync"

	"vsh/hypervisor/bus"
)

// i8042 status register bits (port 0x64 reads).
const (
	kbdStatOBF     = 0x01 // output buffer full: data waiting at port 0x60
	kbdStatSys     = 0x04 // system flag: self test passed (mirrors CTR bit 2)
	kbdStatCmd     = 0x08 // last write was to the command port
	kbdStatUnlock  = 0x10 // keyboard not inhibited by the key lock
	kbdStatAuxData = 0x20 // the byte in the output buffer came from the AUX port
)

// i8042 controller command byte (CTR) bits.
const (
	ctrKbdInt  = 0x01 // raise IRQ 1 for keyboard-port output
	ctrAuxInt  = 0x02 // raise IRQ 12 for AUX-port output
	ctrSys     = 0x04
	ctrKbdDis  = 0x10 // keyboard interface disabled
	ctrAuxDis  = 0x20 // AUX interface disabled
	ctrXlate   = 0x40 // translate keyboard scancodes from set 2 to set 1
	defaultCTR = ctrXlate | ctrSys | ctrKbdInt
)

// i8042 controller commands (port 0x64).
const (
	kbdCmdReadCtr    = 0x20
	kbdCmdWriteCtr   = 0x60
	kbdCmdAuxDisable = 0xa7
	kbdCmdAuxEnable  = 0xa8
	kbdCmdAuxTest    = 0xa9
	kbdCmdSelfTest   = 0xaa
	kbdCmdKbdTest    = 0xab
	kbdCmdKbdDisable = 0xad
	kbdCmdKbdEnable  = 0xae
	kbdCmdReadOutput = 0xd0
	kbdCmdWriteOut   = 0xd1
	kbdCmdWriteKbdOB = 0xd2
	kbdCmdWriteAuxOB = 0xd3
	kbdCmdWriteAux   = 0xd4
	kbdCmdPulseBase  = 0xf0 // 0xf0-0xff pulse output lines; bit 0 clear pulses reset
)

// PS/2 keyboard commands (port 0x60 writes with no controller command
// pending) and replies.
const (
	atkSetLEDs    = 0xed
	atkEcho       = 0xee
	atkScanSet    = 0xf0
	atkGetID      = 0xf2
	atkSetRate    = 0xf3
	atkEnable     = 0xf4
	atkDisable    = 0xf5 // also restores defaults
	atkDefaults   = 0xf6
	atkResend     = 0xfe
	atkReset      = 0xff
	atkAck        = 0xfa
	atkBATPassed  = 0xaa
	atkNak        = 0xfe // "resend": the command was not understood
	atkIDFirst    = 0xab
	atkIDSecond   = 0x83 // an MF2 keyboard
	atkIDSecondXL = 0x41 // the same byte as a translating controller passes it on
)

// outputCapacity bounds the output queue the way a keyboard's internal
// buffer does: Linux's i8042_flush gives up after 16 bytes, so the queue
// never holds more than that. Key presses that do not fit are dropped.
const outputCapacity = 16

// outByte is one byte waiting for the guest at port 0x60.
type outByte struct {
	b   byte
	aux bool // from the AUX port: sets kbdStatAuxData and raises IRQ 12
}

// I8042 is the PS/2 controller with a PS/2 keyboard attached and an empty
// AUX (mouse) port. It models what Linux's i8042 and atkbd drivers use to
// probe and bind (controller self test, command byte with the translation
// bit, interface tests, AUX loopback, keyboard reset, ID, LEDs, typematic
// rate, scancode set, enable/disable), delivers every byte with its
// interrupt (IRQ 1 keyboard, IRQ 12 AUX) when the command byte enables
// it, and lets the host press keys (CtrlAltDel). Command 0xfe (or any
// 0xf0-0xff pulse with bit 0 clear, or writing the output port with bit 0
// clear) calls the reset callback, which is how `reboot=k` restarts the
// machine.
//
// The data port and the command/status port are separate bus.Devices
// (Data and Command), registered at I8042DataPort and I8042CommandPort.
type I8042 struct {
	mu       sync.Mutex
	reset    func()
	kbdIRQ   bus.Interrupt
	auxIRQ   bus.Interrupt
	ctr      byte // controller command byte
	outPort  byte
	out      []outByte // output buffer queue (port 0x60 reads)
	last     byte      // last byte read from port 0x60
	signaled bool      // the interrupt for out[0] has been raised
	status   byte
	pending  byte // controller command waiting for its data byte, or 0
	resets   int

	// The keyboard.
	kbdPending  byte // keyboard command waiting for its parameter, or 0
	kbdScanning bool // scanning enabled (after reset or 0xf4)
	kbdSet      byte // scancode set 1, 2 or 3
	kbdLEDs     byte
	kbdLast     byte // last byte the keyboard sent, for 0xfe (resend)
}

// NewI8042 returns a controller that calls reset (if non-nil) when the
// guest pulses the reset line. reset runs on the vCPU thread; it should
// only record the request. Its interrupts are not connected until
// SetInterrupts is called: without them the guest can only poll.
func NewI8042(reset func()) *I8042 {
	return &I8042{
		reset:       reset,
		ctr:         defaultCTR,
		outPort:     0x03, // A20 on, reset line inactive (high)
		status:      kbdStatSys | kbdStatUnlock,
		kbdScanning: true,
		kbdSet:      2,
	}
}

// SetInterrupts connects the keyboard (ISA IRQ 1) and AUX (ISA IRQ 12)
// interrupt lines; either may be nil. Call it before the guest runs.
func (k *I8042) SetInterrupts(kbd, aux bus.Interrupt) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kbdIRQ, k.auxIRQ = kbd, aux
}

// Resets returns how many reset requests the guest has made.
func (k *I8042) Resets() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.resets
}

// ErrKeyboardDisabled is returned by CtrlAltDel when the guest has
// disabled the keyboard (interface or scanning), so a key press would be
// lost: a real keyboard does not send keys while inhibited.
var ErrKeyboardDisabled = errors.New("the guest has disabled its PS/2 keyboard")

// key is one key of the keyboard in the two scancode sets the model
// speaks: set 2 (the keyboard's native set) and set 1 (what a translating
// controller passes on, and what the keyboard sends in set 1).
type key struct {
	extended   bool // prefixed with 0xe0 in both sets
	set1, set2 byte
}

// Keys the host can press.
var (
	keyLeftCtrl = key{set1: 0x1d, set2: 0x14}
	keyLeftAlt  = key{set1: 0x38, set2: 0x11}
	keyDelete   = key{extended: true, set1: 0x53, set2: 0x71}
)

// CtrlAltDel presses and releases Ctrl, Alt and Delete on the keyboard:
// the make codes of all three, then their break codes in reverse order,
// in the scancode form the guest configured, each byte with its interrupt.
// It fails with ErrKeyboardDisabled while the guest keeps the keyboard
// disabled, and reports a full output buffer (a guest not reading its
// keyboard) as an error too.
func (k *I8042) CtrlAltDel() error {
	k.mu.Lock()
	var seq []byte
	for _, kk := range []key{keyLeftCtrl, keyLeftAlt, keyDelete} {
		seq = append(seq, k.scancode(kk, false)...)
	}
	for _, kk := range []key{keyDelete, keyLeftAlt, keyLeftCtrl} {
		seq = append(seq, k.scancode(kk, true)...)
	}
	var err error
	switch {
	case !k.kbdScanning || k.ctr&ctrKbdDis != 0:
		err = ErrKeyboardDisabled
	case len(k.out)+len(seq) > outputCapacity:
		err = errors.New("the guest is not reading its PS/2 keyboard (output buffer full)")
	default:
		for _, b := range seq {
			k.kbdSend(b)
		}
	}
	irq := k.pendingIRQ()
	k.mu.Unlock()
	raise(irq)
	return err
}

// scancode returns the bytes the guest reads for pressing or releasing kk,
// given the keyboard's scancode set and the controller's translation.
func (k *I8042) scancode(kk key, release bool) []byte {
	var seq []byte
	if kk.extended {
		seq = append(seq, 0xe0)
	}
	set1 := k.kbdSet == 1 || k.ctr&ctrXlate != 0
	switch {
	case set1 && release:
		seq = append(seq, kk.set1|0x80)
	case set1:
		seq = append(seq, kk.set1)
	case release:
		seq = append(seq, 0xf0, kk.set2)
	default:
		seq = append(seq, kk.set2)
	}
	return seq
}

// Data returns the bus.Device for port 0x60.
func (k *I8042) Data() *I8042Port { return &I8042Port{k: k, command: false} }

// Command returns the bus.Device for port 0x64.
func (k *I8042) Command() *I8042Port { return &I8042Port{k: k, command: true} }

// I8042Port is one of the controller's two ports.
type I8042Port struct {
	k       *I8042
	command bool
}

// Read implements bus.Device.
func (p *I8042Port) Read(offset uint64, data []byte) {
	k := p.k
	k.mu.Lock()
	for i := range data {
		if p.command {
			data[i] = k.statusByte()
			continue
		}
		if len(k.out) > 0 {
			k.last = k.out[0].b
			k.out = k.out[1:]
			k.signaled = false
		}
		// An empty output buffer reads as the last byte, as on hardware.
		data[i] = k.last
	}
	irq := k.pendingIRQ()
	k.mu.Unlock()
	raise(irq)
}

// Write implements bus.Device.
func (p *I8042Port) Write(offset uint64, data []byte) {
	k := p.k
	var fire bool
	k.mu.Lock()
	for _, b := range data {
		if p.command {
			fire = k.command(b) || fire
		} else {
			fire = k.data(b) || fire
		}
	}
	reset := k.reset
	irq := k.pendingIRQ()
	k.mu.Unlock()
	raise(irq)
	if fire && reset != nil {
		reset()
	}
}

func raise(irq bus.Interrupt) {
	if irq != nil {
		// A failed KVM_IRQ_LINE leaves nothing to undo: the guest sees the
		// byte when it polls, as it would with interrupts disabled.
		_ = irq.Trigger()
	}
}

// pendingIRQ returns the line to pulse for the byte at the head of the
// output buffer, once per byte, if the command byte enables it.
func (k *I8042) pendingIRQ() bus.Interrupt {
	if len(k.out) == 0 || k.signaled {
		return nil
	}
	if k.out[0].aux {
		if k.ctr&ctrAuxInt == 0 || k.auxIRQ == nil {
			return nil
		}
		k.signaled = true
		return k.auxIRQ
	}
	if k.ctr&ctrKbdInt == 0 || k.kbdIRQ == nil {
		return nil
	}
	k.signaled = true
	return k.kbdIRQ
}

func (k *I8042) statusByte() byte {
	s := k.status
	if len(k.out) > 0 {
		s |= kbdStatOBF
		if k.out[0].aux {
			s |= kbdStatAuxData
		}
	}
	return s
}

// push queues controller output (command results) for port 0x60.
func (k *I8042) push(b byte, aux bool) {
	if len(k.out) >= outputCapacity {
		return
	}
	k.out = append(k.out, outByte{b: b, aux: aux})
}

// kbdSend queues a byte from the keyboard.
func (k *I8042) kbdSend(b byte) {
	k.kbdLast = b
	k.push(b, false)
}

// command handles a byte written to port 0x64 and reports a reset request.
func (k *I8042) command(b byte) bool {
	k.status |= kbdStatCmd
	k.pending = 0
	switch {
	case b == kbdCmdReadCtr:
		k.push(k.ctr, false)
	case b == kbdCmdWriteCtr, b == kbdCmdWriteOut, b == kbdCmdWriteKbdOB, b == kbdCmdWriteAuxOB, b == kbdCmdWriteAux:
		k.pending = b
	case b == kbdCmdSelfTest:
		k.push(0x55, false)
		k.status |= kbdStatSys
	case b == kbdCmdKbdTest, b == kbdCmdAuxTest:
		k.push(0x00, false) // interface test passed
	case b == kbdCmdReadOutput:
		k.push(k.outPort, false)
	case b == kbdCmdKbdDisable:
		k.ctr |= ctrKbdDis
	case b == kbdCmdKbdEnable:
		k.ctr &^= ctrKbdDis
	case b == kbdCmdAuxDisable:
		k.ctr |= ctrAuxDis
	case b == kbdCmdAuxEnable:
		k.ctr &^= ctrAuxDis
	case b >= kbdCmdPulseBase:
		if b&1 == 0 {
			k.resets++
			return true
		}
	}
	return false
}

// data handles a byte written to port 0x60 and reports a reset request.
func (k *I8042) data(b byte) bool {
	k.status &^= kbdStatCmd
	cmd := k.pending
	k.pending = 0
	switch cmd {
	case kbdCmdWriteCtr:
		k.ctr = b
		if b&ctrSys != 0 {
			k.status |= kbdStatSys
		} else {
			k.status &^= kbdStatSys
		}
		// Enabling an interrupt with a byte already waiting raises it.
		k.signaled = false
	case kbdCmdWriteOut:
		k.outPort = b
		if b&1 == 0 {
			k.resets++
			return true
		}
	case kbdCmdWriteKbdOB:
		k.push(b, false)
	case kbdCmdWriteAuxOB:
		// AUX loopback: the byte comes back as if the mouse sent it.
		k.push(b, true)
	case kbdCmdWriteAux:
		// Nothing is plugged into the AUX port: the controller times out
		// and reports "resend".
		k.push(atkNak, true)
	default:
		// Writing to the keyboard re-enables its interface, as on
		// hardware.
		k.ctr &^= ctrKbdDis
		k.keyboard(b)
	}
	return false
}

// keyboard handles a byte sent to the PS/2 keyboard.
func (k *I8042) keyboard(b byte) {
	if cmd := k.kbdPending; cmd != 0 {
		k.kbdPending = 0
		switch cmd {
		case atkSetLEDs:
			k.kbdLEDs = b & 0x07
			k.kbdSend(atkAck)
			return
		case atkSetRate:
			k.kbdSend(atkAck)
			return
		case atkScanSet:
			switch b {
			case 0:
				k.kbdSend(atkAck)
				k.kbdSend(k.scanSetReply())
			case 1, 2, 3:
				k.kbdSet = b
				k.kbdSend(atkAck)
			default:
				k.kbdSend(atkNak)
			}
			return
		}
	}
	switch b {
	case atkSetLEDs, atkSetRate, atkScanSet:
		k.kbdPending = b
		k.kbdSend(atkAck)
	case atkEcho:
		k.kbdSend(atkEcho)
	case atkGetID:
		k.kbdSend(atkAck)
		k.kbdSend(atkIDFirst)
		if k.ctr&ctrXlate != 0 {
			k.kbdSend(atkIDSecondXL)
		} else {
			k.kbdSend(atkIDSecond)
		}
	case atkEnable:
		k.kbdScanning = true
		k.kbdSend(atkAck)
	case atkDisable:
		k.kbdScanning = false
		k.kbdDefaults()
		k.kbdSend(atkAck)
	case atkDefaults:
		k.kbdDefaults()
		k.kbdSend(atkAck)
	case atkResend:
		k.push(k.kbdLast, false)
	case atkReset:
		k.kbdDefaults()
		k.kbdScanning = true
		k.kbdSend(atkAck)
		k.kbdSend(atkBATPassed)
	case 0xe8, 0xea, 0xeb: // vendor extensions (OK GETID, EX_ENABLE, EX_SETLEDS)
		k.kbdSend(atkNak)
	case 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd: // set-3 key behaviour
		k.kbdSend(atkAck)
	default:
		k.kbdSend(atkNak)
	}
}

// kbdDefaults restores the keyboard's power-on settings.
func (k *I8042) kbdDefaults() {
	k.kbdSet = 2
	k.kbdLEDs = 0
	k.kbdPending = 0
}

// scanSetReply is the reply to "get scancode set": the set number, passed
// through the controller's translation when it is on (1, 2, 3 become
// 0x43, 0x41, 0x3f).
func (k *I8042) scanSetReply() byte {
	if k.ctr&ctrXlate == 0 {
		return k.kbdSet
	}
	return [...]byte{1: 0x43, 2: 0x41, 3: 0x3f}[k.kbdSet]
}

// LEDs returns the keyboard LED state the guest last set (bit 0 Scroll
// Lock, bit 1 Num Lock, bit 2 Caps Lock).
func (k *I8042) LEDs() byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kbdLEDs
}
