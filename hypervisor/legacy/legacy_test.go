package legacy

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

// recordIRQ records the levels a device drives.
type recordIRQ struct {
	mu     sync.Mutex
	levels []bool
	edges  int
}

func (r *recordIRQ) Trigger() error { r.mu.Lock(); r.edges++; r.mu.Unlock(); return nil }
func (r *recordIRQ) SetLevel(high bool) error {
	r.mu.Lock()
	r.levels = append(r.levels, high)
	r.mu.Unlock()
	return nil
}
func (r *recordIRQ) level() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.levels) > 0 && r.levels[len(r.levels)-1]
}

type op struct {
	write bool
	reg   uint64
	val   byte // value written, or expected on read
	mask  byte // bits of a read to compare (0 means 0xff)
	irq   *bool
}

func w(reg uint64, v byte) op        { return op{write: true, reg: reg, val: v} }
func r(reg uint64, v byte) op        { return op{reg: reg, val: v} }
func rm(reg uint64, v, mask byte) op { return op{reg: reg, val: v, mask: mask} }
func irqIs(high bool) op             { return op{reg: ^uint64(0), irq: &high} }
func run(t *testing.T, dev interface {
	Read(uint64, []byte)
	Write(uint64, []byte)
}, irq *recordIRQ, ops []op) {
	t.Helper()
	for i, o := range ops {
		switch {
		case o.irq != nil:
			if irq.level() != *o.irq {
				t.Fatalf("step %d: irq level %v, want %v", i, irq.level(), *o.irq)
			}
		case o.write:
			dev.Write(o.reg, []byte{o.val})
		default:
			b := []byte{0}
			dev.Read(o.reg, b)
			m := o.mask
			if m == 0 {
				m = 0xff
			}
			if b[0]&m != o.val&m {
				t.Fatalf("step %d: read reg %d = %#02x, want %#02x (mask %#02x)", i, o.reg, b[0], o.val, m)
			}
		}
	}
}

func TestUARTSequences(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ops   []op
		out   string
	}{
		{"autoconfig: scratch, IER, FIFO id, loopback", "", []op{
			w(uartSCR, 0xa5), r(uartSCR, 0xa5), w(uartSCR, 0x5a), r(uartSCR, 0x5a),
			w(uartIER, 0), r(uartIER, 0), w(uartIER, 0x0f), r(uartIER, 0x0f), w(uartIER, 0),
			w(uartIIR, fcrEnable), rm(uartIIR, 0xc0, 0xc0), // 16550A: FIFOs enabled
			w(uartIIR, 0), rm(uartIIR, 0x00, 0xc0),
			w(uartMCR, mcrLoopback|mcrOUT2|mcrRTS), rm(uartMSR, msrDCD|msrCTS, 0xf0),
			w(uartMCR, 0), rm(uartMSR, msrHost, 0xf0),
		}, ""},
		{"divisor latch", "", []op{
			w(uartLCR, lcrDLAB|0x03), w(uartRBR, 0x01), w(uartIER, 0x00), r(uartRBR, 0x01), r(uartIER, 0x00),
			w(uartLCR, 0x03), r(uartLCR, 0x03), w(uartIER, ierRDI), r(uartIER, ierRDI),
		}, ""},
		{"transmit without interrupts", "", []op{
			w(uartLCR, 0x03), r(uartLSR, lsrTHRE|lsrTEMT), w(uartRBR, 'h'), w(uartRBR, 'i'), r(uartLSR, lsrTHRE|lsrTEMT),
			r(uartIIR, iirNoInt), irqIs(false),
		}, "hi"},
		{"THRE interrupt as the 8250 TX path uses it", "", []op{
			w(uartMCR, mcrOUT2|mcrDTR|mcrRTS), w(uartIER, ierTHRI), irqIs(true),
			rm(uartIIR, iirTHRI, 0x0f), irqIs(false), // reading IIR acknowledges THRE
			w(uartRBR, 'x'), irqIs(true), // THR empties at once
			rm(uartIIR, iirTHRI, 0x0f), w(uartIER, 0), irqIs(false), rm(uartIIR, iirNoInt, 0x0f),
		}, "x"},
		{"THRE re-asserts when IER is rewritten (no UART_BUG_THRE)", "", []op{
			w(uartMCR, mcrOUT2), w(uartIER, ierTHRI), rm(uartIIR, iirTHRI, 0x0f), w(uartIER, 0),
			w(uartIER, ierTHRI), rm(uartIIR, iirTHRI, 0x0f), w(uartIER, 0),
		}, ""},
		{"receive with interrupt", "ab", []op{
			w(uartMCR, mcrOUT2), irqIs(false), w(uartIER, ierRDI), irqIs(true),
			r(uartLSR, lsrDR|lsrTHRE|lsrTEMT), rm(uartIIR, iirRDI, 0x0f),
			r(uartRBR, 'a'), irqIs(true), r(uartRBR, 'b'), irqIs(false),
			r(uartLSR, lsrTHRE|lsrTEMT), rm(uartIIR, iirNoInt, 0x0f), r(uartRBR, 0),
		}, ""},
		{"OUT2 gates the interrupt line", "a", []op{
			w(uartIER, ierRDI), irqIs(false), rm(uartIIR, iirRDI, 0x0f), w(uartMCR, mcrOUT2), irqIs(true),
			w(uartMCR, 0), irqIs(false),
		}, ""},
		{"RDI has priority over THRI", "z", []op{
			w(uartMCR, mcrOUT2), w(uartIER, ierRDI|ierTHRI), rm(uartIIR, iirRDI, 0x0f), r(uartRBR, 'z'),
			rm(uartIIR, iirTHRI, 0x0f), rm(uartIIR, iirNoInt, 0x0f),
		}, ""},
		{"loopback echoes to the receiver, not the output", "", []op{
			w(uartMCR, mcrLoopback), w(uartRBR, 'L'), r(uartLSR, lsrDR|lsrTHRE|lsrTEMT), r(uartRBR, 'L'),
			w(uartMCR, 0), w(uartRBR, 'o'),
		}, "o"},
		{"modem status interrupt and deltas in loopback", "", []op{
			w(uartMCR, mcrLoopback), r(uartMSR, msrDCTS|msrDDSR|msrDDCD), r(uartMSR, 0), w(uartIER, ierMSI),
			w(uartMCR, mcrLoopback|mcrDTR|mcrRTS), rm(uartIIR, iirMSI, 0x0f),
			r(uartMSR, msrCTS|msrDSR|msrDCTS|msrDDSR), r(uartMSR, msrCTS|msrDSR), rm(uartIIR, iirNoInt, 0x0f),
		}, ""},
		{"FCR clears the receive FIFO", "junk", []op{
			r(uartLSR, lsrDR|lsrTHRE|lsrTEMT), w(uartIIR, fcrEnable|fcrClearRX), r(uartLSR, lsrTHRE|lsrTEMT),
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			irq := &recordIRQ{}
			u := NewUART(&out, irq, 0)
			if tt.input != "" {
				if n := u.Input([]byte(tt.input)); n != len(tt.input) {
					t.Fatalf("Input took %d", n)
				}
			}
			run(t, u, irq, tt.ops)
			if out.String() != tt.out {
				t.Fatalf("output %q, want %q", out.String(), tt.out)
			}
		})
	}
}

func TestUARTInputBounded(t *testing.T) {
	u := NewUART(nil, nil, 4)
	if n := u.Input([]byte("abcdef")); n != 4 {
		t.Fatalf("accepted %d, want 4", n)
	}
	if u.Dropped() != 2 || u.InputSpace() != 0 {
		t.Fatalf("dropped %d space %d", u.Dropped(), u.InputSpace())
	}
	b := []byte{0}
	u.Read(uartRBR, b)
	if b[0] != 'a' || u.InputSpace() != 1 {
		t.Fatalf("read %q, space %d", b, u.InputSpace())
	}
	// Loopback into a full buffer sets overrun, reported once by LSR.
	u.Input([]byte("x"))
	u.Write(uartMCR, []byte{mcrLoopback})
	u.Write(uartRBR, []byte{'y'})
	u.Read(uartLSR, b)
	if b[0]&lsrOE == 0 {
		t.Fatalf("LSR %#x: no overrun", b[0])
	}
	u.Read(uartLSR, b)
	if b[0]&lsrOE != 0 {
		t.Fatal("overrun not cleared by reading LSR")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) { f.n++; return 0, errors.New("console gone") }

func TestUARTWriteErrorKept(t *testing.T) {
	fw := &failWriter{}
	u := NewUART(fw, nil, 0)
	u.Write(uartRBR, []byte{'a'})
	u.Write(uartRBR, []byte{'b'})
	if u.WriteErr() == nil || fw.n != 1 {
		t.Fatalf("err %v after %d writes", u.WriteErr(), fw.n)
	}
	b := []byte{0}
	u.Read(uartLSR, b)
	if b[0]&lsrTHRE == 0 {
		t.Fatal("guest sees a stuck transmitter after an output error")
	}
}

func TestUARTConcurrentInput(t *testing.T) {
	var out bytes.Buffer
	u := NewUART(&out, &recordIRQ{}, 1<<20)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			u.Input([]byte("k"))
		}
	}()
	got := 0
	go func() {
		defer wg.Done()
		b := []byte{0}
		for got < 1000 {
			u.Read(uartLSR, b)
			if b[0]&lsrDR != 0 {
				u.Read(uartRBR, b)
				got++
			}
		}
	}()
	wg.Wait()
}

func FuzzUART(f *testing.F) {
	f.Add([]byte{0x13, 0x80, 0x10, 0x01, 0x14, 0x0b, 0x02, 0x41}, []byte("in"))
	f.Add([]byte{0x21, 0x01, 0x0a, 0x07}, []byte{})
	f.Fuzz(func(t *testing.T, prog []byte, input []byte) {
		var out bytes.Buffer
		irq := &recordIRQ{}
		u := NewUART(&out, irq, 64)
		u.Input(input)
		for i := 0; i+1 < len(prog); i += 2 {
			reg := uint64(prog[i] & 7)
			if prog[i]&0x10 != 0 {
				u.Write(reg, []byte{prog[i+1]})
			} else {
				b := make([]byte, 1+int(prog[i]>>6))
				u.Read(reg, b)
			}
			if u.InputSpace() < 0 || u.InputSpace() > 64 {
				t.Fatalf("input space %d", u.InputSpace())
			}
			// The line is high exactly when IIR reports an interrupt and
			// OUT2 is set (outside loopback).
			u.mu.Lock()
			want := u.pending() != iirNoInt && u.mcr&mcrOUT2 != 0 && u.mcr&mcrLoopback == 0
			u.mu.Unlock()
			if irq.level() != want {
				t.Fatalf("irq level %v, want %v", irq.level(), want)
			}
		}
	})
}

func TestI8042(t *testing.T) {
	resets := 0
	k := NewI8042(func() { resets++ })
	data, cmd := k.Data(), k.Command()
	st := func() byte { b := []byte{0}; cmd.Read(0, b); return b[0] }
	rd := func() byte { b := []byte{0}; data.Read(0, b); return b[0] }
	steps := []struct {
		name string
		do   func()
		want func() bool
	}{
		{"idle status: no OBF/IBF, system flag", func() {}, func() bool { return st()&0x03 == 0 && st()&kbdStatSys != 0 }},
		{"self test answers 0x55", func() { cmd.Write(0, []byte{kbdCmdSelfTest}) }, func() bool { return st()&kbdStatOBF != 0 && rd() == 0x55 && st()&kbdStatOBF == 0 }},
		{"read command byte", func() { cmd.Write(0, []byte{kbdCmdReadCtr}) }, func() bool { return rd() == 0x45 }},
		{"write command byte", func() {
			cmd.Write(0, []byte{kbdCmdWriteCtr})
			data.Write(0, []byte{0x65})
			cmd.Write(0, []byte{kbdCmdReadCtr})
		}, func() bool { return rd() == 0x65 }},
		{"interface test", func() { cmd.Write(0, []byte{kbdCmdKbdTest}) }, func() bool { return rd() == 0x00 }},
		{"keyboard reset acknowledged", func() { data.Write(0, []byte{0xff}) }, func() bool { return rd() == 0xfa && rd() == 0xaa }},
		{"no reset yet", func() {}, func() bool { return resets == 0 }},
		{"0xfe pulses reset", func() { cmd.Write(0, []byte{0xfe}) }, func() bool { return resets == 1 && k.Resets() == 1 }},
		{"0xff pulses nothing", func() { cmd.Write(0, []byte{0xff}) }, func() bool { return resets == 1 }},
		{"output port bit 0 low resets", func() { cmd.Write(0, []byte{kbdCmdWriteOut}); data.Write(0, []byte{0x02}) }, func() bool { return resets == 2 }},
		{"empty data port repeats the last byte", func() {}, func() bool { return rd() == 0xaa && st()&kbdStatOBF == 0 }},
	}
	for _, s := range steps {
		s.do()
		if !s.want() {
			t.Fatalf("%s: failed (status %#x, resets %d)", s.name, st(), resets)
		}
	}
	// Without a callback a reset request is still counted.
	k2 := NewI8042(nil)
	k2.Command().Write(0, []byte{0xfe})
	if k2.Resets() != 1 {
		t.Fatal("reset not counted without callback")
	}
}

func TestResetControlAndSinks(t *testing.T) {
	n := 0
	rc := NewResetControl(func() { n++ })
	rc.Write(0, []byte{0x02})
	if n != 0 {
		t.Fatal("reset without RST_CPU")
	}
	rc.Write(0, []byte{0x06})
	b := []byte{0}
	rc.Read(0, b)
	if n != 1 || b[0] != 0x02 {
		t.Fatalf("resets %d, register %#x", n, b[0])
	}
	s := &Sink{ReadValue: 0xff}
	s.Write(0, []byte{0x42})
	s.Read(0, b)
	if s.Last() != 0x42 || b[0] != 0xff {
		t.Fatal("sink")
	}
	var code byte = 0
	d := NewDebugExit(func(c byte) { code = c })
	d.Write(0, []byte{7})
	if code != 7 {
		t.Fatal("debug exit")
	}
}

func cmosRead(c *CMOS, reg byte) byte {
	c.Write(0, []byte{reg})
	b := []byte{0}
	c.Read(1, b)
	return b[0]
}

func cmosWrite(c *CMOS, reg, v byte) {
	c.Write(0, []byte{reg})
	c.Write(1, []byte{v})
}

func TestCMOSTime(t *testing.T) {
	host := time.Date(2026, time.November, 25, 19, 7, 59, 0, time.UTC)
	clock := host
	c := NewCMOS(func() time.Time { return clock })
	tests := []struct {
		name string
		regB byte
		want map[byte]byte
	}{
		{"BCD 24h (Linux default)", regB24H, map[byte]byte{
			cmosSeconds: 0x59, cmosMinutes: 0x07, cmosHours: 0x19, cmosWeekday: 0x04, cmosDay: 0x25, cmosMonth: 0x11, cmosYear: 0x26, cmosCentury: 0x20}},
		{"binary 24h", regB24H | regBDM, map[byte]byte{
			cmosSeconds: 59, cmosMinutes: 7, cmosHours: 19, cmosDay: 25, cmosMonth: 11, cmosYear: 26, cmosCentury: 20}},
		{"BCD 12h", 0, map[byte]byte{cmosHours: 0x80 | 0x07}},
		{"binary 12h", regBDM, map[byte]byte{cmosHours: 0x80 | 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmosWrite(c, cmosRegB, tt.regB)
			if got := cmosRead(c, cmosRegB); got != tt.regB {
				t.Fatalf("register B = %#x", got)
			}
			for reg, want := range tt.want {
				if got := cmosRead(c, reg); got != want {
					t.Errorf("register %#x = %#x, want %#x", reg, got, want)
				}
			}
		})
	}
	cmosWrite(c, cmosRegB, regB24H)
	if a := cmosRead(c, cmosRegA); a&regAUIP != 0 || a != 0x26 {
		t.Errorf("register A = %#x", a)
	}
	if d := cmosRead(c, cmosRegD); d != regDVRT {
		t.Errorf("register D = %#x", d)
	}
	// The clock follows the host.
	clock = host.Add(61 * time.Second)
	if s, m := cmosRead(c, cmosSeconds), cmosRead(c, cmosMinutes); s != 0x00 || m != 0x09 {
		t.Errorf("after 61 s: %x:%x", m, s)
	}
	// Setting the time the way Linux's mc146818_set_time does.
	cmosWrite(c, cmosRegB, regB24H|regBSet)
	for reg, v := range map[byte]byte{cmosYear: 0x99, cmosMonth: 0x12, cmosDay: 0x31, cmosHours: 0x23, cmosMinutes: 0x59, cmosSeconds: 0x58} {
		cmosWrite(c, reg, v)
	}
	cmosWrite(c, cmosCentury, 0x20)
	cmosWrite(c, cmosRegB, regB24H)
	clock = clock.Add(3 * time.Second)
	want := map[byte]byte{cmosYear: 0x00, cmosMonth: 0x01, cmosDay: 0x01, cmosHours: 0x00, cmosMinutes: 0x00, cmosSeconds: 0x01, cmosCentury: 0x21}
	for reg, v := range want {
		if got := cmosRead(c, reg); got != v {
			t.Errorf("after set + 3 s: register %#x = %#x, want %#x", reg, got, v)
		}
	}
	// 12-hour write: 11 PM.
	cmosWrite(c, cmosRegB, 0)
	cmosWrite(c, cmosHours, 0x80|0x11)
	cmosWrite(c, cmosRegB, regB24H)
	if h := cmosRead(c, cmosHours); h != 0x23 {
		t.Errorf("12h write of 11 PM reads %#x in 24h", h)
	}
}

func TestCMOSNVRAMAndMemory(t *testing.T) {
	c := NewCMOS(nil)
	for reg := byte(0x0e); reg < 0x80; reg++ {
		if reg == cmosCentury {
			continue
		}
		cmosWrite(c, reg, reg^0x5a)
	}
	for reg := byte(0x0e); reg < 0x80; reg++ {
		if reg == cmosCentury {
			continue
		}
		if got := cmosRead(c, reg); got != reg^0x5a {
			t.Fatalf("NVRAM %#x = %#x", reg, got)
		}
	}
	// Register C is cleared by reading; D is read-only.
	c.ram[cmosRegC] = 0x90
	if cmosRead(c, cmosRegC) != 0x90 || cmosRead(c, cmosRegC) != 0 {
		t.Error("register C not cleared on read")
	}
	cmosWrite(c, cmosRegD, 0)
	if cmosRead(c, cmosRegD) != regDVRT {
		t.Error("register D writable")
	}
	// NMI mask and index wrap.
	c.Write(0, []byte{0x80 | 0x10})
	if !c.NMIDisabled() {
		t.Error("NMI mask not seen")
	}
	c.Write(0, []byte{0x10})
	if c.NMIDisabled() {
		t.Error("NMI mask stuck")
	}
	b := []byte{0}
	c.Read(0, b)
	if b[0] != 0xff {
		t.Errorf("index port reads %#x", b[0])
	}
	c.SetMemory(3<<30, 3<<30)
	get16 := func(lo byte) int { return int(cmosRead(c, lo)) | int(cmosRead(c, lo+1))<<8 }
	if get16(cmosBaseLo) != 640 || get16(cmosExtLo) != 0xffff || get16(cmosHighLo) != (3<<30-16<<20)>>16 {
		t.Errorf("memory bytes: base %d ext %#x high %#x", get16(cmosBaseLo), get16(cmosExtLo), get16(cmosHighLo))
	}
	above := int(cmosRead(c, cmosAbove4G0)) | int(cmosRead(c, cmosAbove4G1))<<8 | int(cmosRead(c, cmosAbove4G2))<<16
	if above != (3<<30)>>16 {
		t.Errorf("above 4G = %#x", above)
	}
	c.SetMemory(8<<20, 0)
	if get16(cmosExtLo) != 7<<10 || get16(cmosHighLo) != 0 {
		t.Errorf("8 MiB: ext %d high %d", get16(cmosExtLo), get16(cmosHighLo))
	}
}
