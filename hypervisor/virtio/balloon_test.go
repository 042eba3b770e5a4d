package virtio

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"
)

type discardLog struct {
	mu     sync.Mutex
	ranges [][2]uint64
}

func (l *discardLog) discard(gpa, n uint64) error {
	l.mu.Lock()
	l.ranges = append(l.ranges, [2]uint64{gpa, n})
	l.mu.Unlock()
	return nil
}

func (l *discardLog) get() [][2]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][2]uint64(nil), l.ranges...)
}

func pfnList(pfns ...uint32) []byte {
	b := make([]byte, 4*len(pfns))
	for i, p := range pfns {
		binary.LittleEndian.PutUint32(b[4*i:], p)
	}
	return b
}

func TestBalloonInflateDeflate(t *testing.T) {
	var log discardLog
	bal := NewBalloon(BalloonConfig{Discard: log.discard, DeflateOnOOM: true})
	d := newTestDriver(t, bal)
	d.start(FeatureRingEventIdx|BalloonFStatsVQ|BalloonFDeflateOnOOM, 64)
	if len(d.queues) != 3 {
		t.Fatalf("%d queues, want inflate, deflate, stats", len(d.queues))
	}

	before := d.read32(RegConfigGeneration)
	irqs := d.irq.count()
	bal.SetTarget(1000)
	if got := d.read32(RegConfig); got != 1000 {
		t.Fatalf("num_pages %d, want 1000", got)
	}
	if d.read32(RegConfigGeneration) == before {
		t.Errorf("config generation unchanged after SetTarget")
	}
	if d.irq.count() == irqs || d.read32(RegInterruptStatus)&InterruptConfigChange == 0 {
		t.Errorf("no config change interrupt after SetTarget")
	}
	d.write32(RegInterruptACK, InterruptConfigChange)

	// Frames 0x100-0x102 are contiguous guest RAM; 0x10 lies outside it.
	base := uint32(testMemBase >> 12)
	d.add(0, out(pfnList(base+0x100, base+0x101, base+0x102, 0x10, base+0x200)))
	d.notify(0)
	d.waitUsed(0)
	want := [][2]uint64{{uint64(base+0x100) << 12, 3 << 12}, {uint64(base+0x200) << 12, 1 << 12}}
	got := log.get()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("discarded %v, want %v", got, want)
	}
	if bal.DiscardedPages() != 4 {
		t.Errorf("DiscardedPages %d, want 4", bal.DiscardedPages())
	}
	d.write32(RegConfig+4, 4)
	if bal.Actual() != 4 {
		t.Errorf("Actual %d, want 4", bal.Actual())
	}

	d.add(1, out(pfnList(base+0x100)))
	d.notify(1)
	d.waitUsed(1)
	if len(log.get()) != 2 {
		t.Errorf("deflate discarded memory")
	}
}

func TestBalloonStats(t *testing.T) {
	bal := NewBalloon(BalloonConfig{Discard: (&discardLog{}).discard})
	d := newTestDriver(t, bal)
	d.start(BalloonFStatsVQ, 64)
	stat := func(tag uint16, v uint64) []byte {
		b := make([]byte, 10)
		binary.LittleEndian.PutUint16(b, tag)
		binary.LittleEndian.PutUint64(b[2:], v)
		return b
	}
	report := func(free uint64) {
		var p []byte
		p = append(p, stat(BalloonStatFreeMemory, free)...)
		p = append(p, stat(BalloonStatTotalMemory, 512<<20)...)
		p = append(p, stat(BalloonStatMajorFaults, 7)...)
		p = append(p, stat(999, 1)...) // unknown tag, skipped
		d.add(2, out(p))
		d.notify(2)
	}
	waitFree := func(free uint64) BalloonStats {
		deadline := time.After(10 * time.Second)
		for {
			if s, ok := bal.Stats(); ok && s.FreeMemory == free {
				return s
			}
			select {
			case <-deadline:
				t.Fatalf("stats with free memory %d never arrived", free)
			case <-time.After(time.Millisecond):
			}
		}
	}
	report(100 << 20)
	s := waitFree(100 << 20)
	if s.TotalMemory != 512<<20 || s.MajorFaults != 7 || !s.Reported[BalloonStatTotalMemory] || s.Reported[BalloonStatSwapIn] {
		t.Fatalf("stats %+v", s)
	}
	// Ask for fresh stats: the device returns the buffer, the driver
	// answers with a new report.
	bal.RequestStats()
	d.waitUsed(2)
	report(50 << 20)
	waitFree(50 << 20)
}

func TestBalloonFreePageReporting(t *testing.T) {
	var log discardLog
	bal := NewBalloon(BalloonConfig{Discard: log.discard, FreePageReporting: true})
	d := newTestDriver(t, bal)
	// The driver takes reporting but not stats: reporting is queue 2.
	if !d.negotiate(FeatureVersion1 | BalloonFReporting) {
		t.Fatal("negotiation failed")
	}
	d.setupQueues(32)
	d.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	_, addrs := d.add(2, in(4<<20), in(8192))
	d.notify(2)
	if _, n := d.waitUsed(2); n != 0 {
		t.Errorf("used length %d, want 0", n)
	}
	got := log.get()
	if len(got) != 2 || got[0] != [2]uint64{addrs[0], 4 << 20} || got[1] != [2]uint64{addrs[1], 8192} {
		t.Fatalf("reported ranges %v, want %#x+4M and %#x+8K", got, addrs[0], addrs[1])
	}
}

func TestBalloonMadviseDefault(t *testing.T) {
	// Without a hook the device madvises guest RAM itself: the page reads
	// back as zeroes.
	bal := NewBalloon(BalloonConfig{})
	d := newTestDriver(t, bal)
	d.start(0, 16)
	page := d.alloc(4096, 4096)
	if d.bytes(page, 1)[0] = 9; page%4096 != 0 {
		t.Fatal("unaligned")
	}
	d.add(0, out(pfnList(uint32(page>>12))))
	d.notify(0)
	d.waitUsed(0)
	if bal.DiscardedPages() != 1 {
		t.Fatalf("DiscardedPages %d, want 1", bal.DiscardedPages())
	}
	if d.bytes(page, 1)[0] != 0 {
		t.Errorf("discarded page still holds data")
	}
}
