package legacy

import (
	"sync"
	"time"
)

// CMOS register indexes (MC146818 and the PC's NVRAM layout).
const (
	cmosSeconds    = 0x00
	cmosSecAlarm   = 0x01
	cmosMinutes    = 0x02
	cmosMinAlarm   = 0x03
	cmosHours      = 0x04
	cmosHourAlarm  = 0x05
	cmosWeekday    = 0x06
	cmosDay        = 0x07
	cmosMonth      = 0x08
	cmosYear       = 0x09
	cmosRegA       = 0x0a
	cmosRegB       = 0x0b
	cmosRegC       = 0x0c
	cmosRegD       = 0x0d
	cmosBaseLo     = 0x15 // base memory in KiB
	cmosBaseHi     = 0x16
	cmosExtLo      = 0x17 // memory above 1 MiB in KiB (max 0xffff)
	cmosExtHi      = 0x18
	cmosExt2Lo     = 0x30 // same, as POST reports it
	cmosExt2Hi     = 0x31
	cmosCentury    = 0x32
	cmosHighLo     = 0x34 // memory above 16 MiB below 4 GiB, 64 KiB units
	cmosHighHi     = 0x35
	cmosAbove4G0   = 0x5b // memory above 4 GiB, 64 KiB units, 3 bytes
	cmosAbove4G1   = 0x5c
	cmosAbove4G2   = 0x5d
	cmosNMIDisable = 0x80 // index port bit 7
	cmosIndexMask  = 0x7f

	regAUIP   = 0x80 // update in progress: never reported
	regBSet   = 0x80 // updates frozen while the guest sets the time
	regBDM    = 0x04 // binary (1) or BCD (0) data
	regB24H   = 0x02 // 24-hour (1) or 12-hour (0) hours
	regDVRT   = 0x80 // valid RAM and time
	hourPM    = 0x80
	cmosBytes = 128
)

// CMOS is the MC146818 real-time clock and the PC's 128-byte CMOS NVRAM at
// ports 0x70 (index, bit 7 masks NMI) and 0x71 (data). The time of day is
// the host's clock in UTC plus an offset the guest changes by setting the
// clock, presented in BCD or binary and 12- or 24-hour form as register B
// says. Update-in-progress is never reported, so readers never wait.
// Periodic, alarm and update-ended interrupts are not generated.
type CMOS struct {
	mu     sync.Mutex
	now    func() time.Time
	offset time.Duration
	index  byte
	nmiOff bool
	ram    [cmosBytes]byte
}

// NewCMOS returns the RTC with register A at 32.768 kHz / 1024 Hz, register
// B in BCD and 24-hour mode, and register D reporting valid time. now is the
// host clock (nil: time.Now).
func NewCMOS(now func() time.Time) *CMOS {
	if now == nil {
		now = time.Now
	}
	c := &CMOS{now: now}
	c.ram[cmosRegA] = 0x26
	c.ram[cmosRegB] = regB24H
	c.ram[cmosRegD] = regDVRT
	return c
}

// SetMemory records the guest RAM size in the CMOS bytes firmware would
// fill: base memory (640 KiB), extended memory in KiB above 1 MiB (capped at
// 0xffff), 64 KiB units above 16 MiB below 4 GiB, and 64 KiB units above
// 4 GiB. below4G and above4G are the bytes of RAM on each side of 4 GiB.
func (c *CMOS) SetMemory(below4G, above4G uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	put16 := func(lo byte, v uint64) {
		v = min(v, 0xffff)
		c.ram[lo], c.ram[lo+1] = byte(v), byte(v>>8)
	}
	put16(cmosBaseLo, 640)
	var ext, high uint64
	if below4G > 1<<20 {
		ext = (below4G - 1<<20) >> 10
	}
	if below4G > 16<<20 {
		high = (below4G - 16<<20) >> 16
	}
	put16(cmosExtLo, ext)
	put16(cmosExt2Lo, ext)
	put16(cmosHighLo, high)
	a := min(above4G>>16, 0xffffff)
	c.ram[cmosAbove4G0], c.ram[cmosAbove4G1], c.ram[cmosAbove4G2] = byte(a), byte(a>>8), byte(a>>16)
}

// NMIDisabled reports whether the guest has masked NMIs through bit 7 of
// the index port.
func (c *CMOS) NMIDisabled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nmiOff
}

// Read implements bus.Device (offset 0: index port, 1: data port).
func (c *CMOS) Read(offset uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		switch offset + uint64(i) {
		case 0:
			data[i] = 0xff // the index port is write-only
		case 1:
			data[i] = c.readReg(c.index)
		default:
			data[i] = 0xff
		}
	}
}

// Write implements bus.Device.
func (c *CMOS) Write(offset uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range data {
		switch offset + uint64(i) {
		case 0:
			c.index = b & cmosIndexMask
			c.nmiOff = b&cmosNMIDisable != 0
		case 1:
			c.writeReg(c.index, b)
		}
	}
}

func (c *CMOS) guestTime() time.Time { return c.now().UTC().Add(c.offset) }

func (c *CMOS) binary() bool { return c.ram[cmosRegB]&regBDM != 0 }

func (c *CMOS) encode(v int) byte {
	if c.binary() {
		return byte(v)
	}
	return byte(v/10<<4 | v%10)
}

func (c *CMOS) decode(b byte) int {
	if c.binary() {
		return int(b)
	}
	return int(b>>4)*10 + int(b&0x0f)
}

// isTimeReg reports whether reg is one of the clock's date/time registers.
func isTimeReg(reg byte) bool {
	switch reg {
	case cmosSeconds, cmosMinutes, cmosHours, cmosWeekday, cmosDay, cmosMonth, cmosYear, cmosCentury:
		return true
	}
	return false
}

// setting reports whether the guest holds the SET bit: the time registers
// are then plain latches, applied together when SET is cleared (so a date
// written field by field is never normalised half-way, e.g. the 31st
// written while the month is still November).
func (c *CMOS) setting() bool { return c.ram[cmosRegB]&regBSet != 0 }

func (c *CMOS) readReg(reg byte) byte {
	if isTimeReg(reg) && c.setting() {
		return c.ram[reg]
	}
	switch reg {
	case cmosSeconds, cmosMinutes, cmosHours, cmosWeekday, cmosDay, cmosMonth, cmosYear, cmosCentury:
		t := c.guestTime()
		switch reg {
		case cmosSeconds:
			return c.encode(t.Second())
		case cmosMinutes:
			return c.encode(t.Minute())
		case cmosHours:
			h := t.Hour()
			if c.ram[cmosRegB]&regB24H != 0 {
				return c.encode(h)
			}
			pm := h >= 12
			h %= 12
			if h == 0 {
				h = 12
			}
			v := c.encode(h)
			if pm {
				v |= hourPM
			}
			return v
		case cmosWeekday:
			return c.encode(int(t.Weekday()) + 1)
		case cmosDay:
			return c.encode(t.Day())
		case cmosMonth:
			return c.encode(int(t.Month()))
		case cmosYear:
			return c.encode(t.Year() % 100)
		case cmosCentury:
			return c.encode(t.Year() / 100 % 100)
		}
	case cmosRegA:
		return c.ram[cmosRegA] &^ regAUIP
	case cmosRegC:
		v := c.ram[cmosRegC]
		c.ram[cmosRegC] = 0 // reading C acknowledges its flags
		return v
	case cmosRegD:
		return regDVRT
	}
	return c.ram[reg&cmosIndexMask]
}

func (c *CMOS) writeReg(reg byte, b byte) {
	if isTimeReg(reg) && c.setting() {
		c.ram[reg] = b
		return
	}
	switch reg {
	case cmosRegB:
		was := c.setting()
		if !was && b&regBSet != 0 {
			// Latch the running time in the format being set.
			c.ram[cmosRegB] = b &^ regBSet
			for _, r := range []byte{cmosSeconds, cmosMinutes, cmosHours, cmosWeekday, cmosDay, cmosMonth, cmosYear, cmosCentury} {
				c.ram[r] = c.readReg(r)
			}
		}
		c.ram[cmosRegB] = b
		if was && b&regBSet == 0 {
			c.applyLatched()
		}
	case cmosSeconds, cmosMinutes, cmosHours, cmosDay, cmosMonth, cmosYear, cmosCentury:
		c.setTimeField(reg, b)
	case cmosWeekday:
		// Derived from the date.
	case cmosRegA:
		c.ram[cmosRegA] = b &^ regAUIP
	case cmosRegC, cmosRegD:
		// Read-only.
	default:
		c.ram[reg&cmosIndexMask] = b
	}
}

// applyLatched sets the guest's clock from the latched time registers.
func (c *CMOS) applyLatched() {
	hour := c.decode(c.ram[cmosHours])
	if c.ram[cmosRegB]&regB24H == 0 {
		h := c.ram[cmosHours]
		hour = c.decode(h&^hourPM) % 12
		if h&hourPM != 0 {
			hour += 12
		}
	}
	year := c.decode(c.ram[cmosCentury])*100 + c.decode(c.ram[cmosYear])%100
	t := c.guestTime()
	nt := time.Date(year, time.Month(c.decode(c.ram[cmosMonth])), c.decode(c.ram[cmosDay]),
		hour, c.decode(c.ram[cmosMinutes]), c.decode(c.ram[cmosSeconds]), t.Nanosecond(), time.UTC)
	c.offset = nt.Sub(c.now().UTC())
}

// setTimeField changes one field of the guest's clock, keeping the others,
// by moving the offset from the host clock.
func (c *CMOS) setTimeField(reg, b byte) {
	t := c.guestTime()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	switch reg {
	case cmosSeconds:
		sec = c.decode(b)
	case cmosMinutes:
		minute = c.decode(b)
	case cmosHours:
		if c.ram[cmosRegB]&regB24H != 0 {
			hour = c.decode(b)
		} else {
			hour = c.decode(b&^hourPM) % 12
			if b&hourPM != 0 {
				hour += 12
			}
		}
	case cmosDay:
		day = c.decode(b)
	case cmosMonth:
		month = time.Month(c.decode(b))
	case cmosYear:
		year = year/100*100 + c.decode(b)%100
	case cmosCentury:
		year = c.decode(b)*100 + year%100
	}
	nt := time.Date(year, month, day, hour, minute, sec, t.Nanosecond(), time.UTC)
	c.offset = nt.Sub(c.now().UTC())
}
