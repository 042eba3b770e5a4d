package legacy

import "sync"

// i8042 status register bits.
const (
	kbdStatOBF     = 0x01 // output buffer full: data waiting at port 0x60
	kbdStatSys     = 0x04 // system flag: self test passed
	kbdStatCmd     = 0x08 // last write was to the command port
	kbdStatUnlock  = 0x10 // keyboard not inhibited
	kbdStatAuxData = 0x20
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

// I8042 is the PS/2 controller as far as a guest without a keyboard needs
// it: the controller commands Linux and firmware issue, its command byte,
// and the reset line. Command 0xfe (or any 0xf0-0xff pulse with bit 0
// clear, or writing the output port with bit 0 clear) calls the reset
// callback, which is how `reboot=k` restarts the machine. No keyboard or
// mouse is attached: bytes written to them are acknowledged with 0xfa and
// otherwise ignored.
//
// The data port and the command/status port are separate bus.Devices
// (Data and Command), registered at I8042DataPort and I8042CommandPort.
type I8042 struct {
	mu      sync.Mutex
	reset   func()
	ctr     byte // controller command byte
	outPort byte
	out     []byte // output buffer queue (port 0x60 reads)
	status  byte
	pending byte // command waiting for its data byte, or 0
	resets  int
}

// NewI8042 returns a controller that calls reset (if non-nil) when the
// guest pulses the reset line. reset runs on the vCPU thread; it should
// only record the request.
func NewI8042(reset func()) *I8042 {
	return &I8042{
		reset:   reset,
		ctr:     0x45, // translate, system flag, keyboard interrupt
		outPort: 0x03, // A20 on, reset line inactive (high)
		status:  kbdStatSys | kbdStatUnlock,
	}
}

// Resets returns how many reset requests the guest has made.
func (k *I8042) Resets() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.resets
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
	defer k.mu.Unlock()
	for i := range data {
		if p.command {
			data[i] = k.statusByte()
			continue
		}
		if len(k.out) == 0 {
			data[i] = 0
			continue
		}
		data[i] = k.out[0]
		k.out = k.out[1:]
	}
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
	k.mu.Unlock()
	if fire && reset != nil {
		reset()
	}
}

func (k *I8042) statusByte() byte {
	s := k.status
	if len(k.out) > 0 {
		s |= kbdStatOBF
	}
	return s
}

func (k *I8042) push(b ...byte) { k.out = append(k.out[:len(k.out):len(k.out)], b...) }

// command handles a byte written to port 0x64 and reports a reset request.
func (k *I8042) command(b byte) bool {
	k.status |= kbdStatCmd
	k.pending = 0
	switch {
	case b == kbdCmdReadCtr:
		k.push(k.ctr)
	case b == kbdCmdWriteCtr, b == kbdCmdWriteOut, b == kbdCmdWriteKbdOB, b == kbdCmdWriteAuxOB, b == kbdCmdWriteAux:
		k.pending = b
	case b == kbdCmdSelfTest:
		k.push(0x55)
		k.status |= kbdStatSys
	case b == kbdCmdKbdTest, b == kbdCmdAuxTest:
		k.push(0x00)
	case b == kbdCmdReadOutput:
		k.push(k.outPort)
	case b == kbdCmdKbdDisable:
		k.ctr |= 0x10
	case b == kbdCmdKbdEnable:
		k.ctr &^= 0x10
	case b == kbdCmdAuxDisable:
		k.ctr |= 0x20
	case b == kbdCmdAuxEnable:
		k.ctr &^= 0x20
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
		if b&kbdStatSys != 0 {
			k.status |= kbdStatSys
		} else {
			k.status &^= kbdStatSys
		}
	case kbdCmdWriteOut:
		k.outPort = b
		if b&1 == 0 {
			k.resets++
			return true
		}
	case kbdCmdWriteKbdOB:
		k.push(b)
	case kbdCmdWriteAuxOB:
		k.push(b)
	case kbdCmdWriteAux:
		// No mouse: the byte goes nowhere.
	default:
		// A keyboard command with no keyboard attached: acknowledge, and
		// answer a reset (0xff) with a passed self-test.
		k.push(0xfa)
		if b == 0xff {
			k.push(0xaa)
		}
	}
	return false
}
