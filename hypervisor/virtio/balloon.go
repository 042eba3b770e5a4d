package virtio

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/memory"
)

// virtio-balloon feature bits.
const (
	BalloonFStatsVQ      = 1 << 1
	BalloonFDeflateOnOOM = 1 << 2
	BalloonFReporting    = 1 << 5
)

// Memory statistics tags (virtio 1.1 §5.5.6.3).
const (
	BalloonStatSwapIn = iota
	BalloonStatSwapOut
	BalloonStatMajorFaults
	BalloonStatMinorFaults
	BalloonStatFreeMemory
	BalloonStatTotalMemory
	BalloonStatAvailableMemory
	BalloonStatDiskCaches
	BalloonStatHugetlbAllocations
	BalloonStatHugetlbFailures
)

const (
	balloonQueueSize = 256
	balloonPageShift = 12
	balloonPageSize  = 1 << balloonPageShift
	balloonStatSize  = 10 // tag u16 + value u64
	balloonCfgSize   = 16
)

// BalloonConfig configures a virtio-balloon device.
type BalloonConfig struct {
	// StatsPeriod is how often the guest is asked for memory statistics;
	// zero polls only on RequestStats.
	StatsPeriod       time.Duration
	FreePageReporting bool
	DeflateOnOOM      bool
	// Discard gives the host memory behind [gpa, gpa+length) back to the
	// host (MADV_DONTNEED); it is called for inflated pages and reported
	// free ranges. When nil, the device madvises the host mapping itself.
	Discard func(gpa, length uint64) error
}

// BalloonStats is the guest's last memory statistics report. Memory sizes
// are in bytes; a field the guest did not report is zero and absent from
// Reported.
type BalloonStats struct {
	SwapIn, SwapOut            uint64
	MajorFaults, MinorFaults   uint64
	FreeMemory, TotalMemory    uint64
	AvailableMemory            uint64
	DiskCaches                 uint64
	HugetlbAllocs, HugetlbFail uint64
	Reported                   map[uint16]bool
	Updated                    time.Time
}

// Value returns the last reported value of the statistic tag
// (BalloonStatSwapIn...), or 0 for a tag the device does not know.
func (s *BalloonStats) Value(tag uint16) uint64 {
	if p := s.field(tag); p != nil {
		return *p
	}
	return 0
}

// field is where statistic tag is kept, or nil for an unknown tag.
func (s *BalloonStats) field(tag uint16) *uint64 {
	switch tag {
	case BalloonStatSwapIn:
		return &s.SwapIn
	case BalloonStatSwapOut:
		return &s.SwapOut
	case BalloonStatMajorFaults:
		return &s.MajorFaults
	case BalloonStatMinorFaults:
		return &s.MinorFaults
	case BalloonStatFreeMemory:
		return &s.FreeMemory
	case BalloonStatTotalMemory:
		return &s.TotalMemory
	case BalloonStatAvailableMemory:
		return &s.AvailableMemory
	case BalloonStatDiskCaches:
		return &s.DiskCaches
	case BalloonStatHugetlbAllocations:
		return &s.HugetlbAllocs
	case BalloonStatHugetlbFailures:
		return &s.HugetlbFail
	}
	return nil
}

// Balloon is a virtio-balloon device.
type Balloon struct {
	cfg BalloonConfig

	mu            sync.Mutex
	numPages      uint32 // target balloon size in 4 KiB pages
	actual        uint32 // as reported by the driver
	stats         BalloonStats
	haveStats     bool
	configChanged func()
	statsKick     chan struct{}
	discarded     uint64 // pages given back to the host

	w workers
}

// NewBalloon returns a virtio-balloon device with an empty balloon.
func NewBalloon(cfg BalloonConfig) *Balloon {
	return &Balloon{cfg: cfg, statsKick: make(chan struct{}, 1)}
}

// DeviceID implements Device.
func (b *Balloon) DeviceID() uint32 { return IDBalloon }

// Features implements Device.
func (b *Balloon) Features() uint64 {
	f := uint64(BalloonFStatsVQ)
	if b.cfg.DeflateOnOOM {
		f |= BalloonFDeflateOnOOM
	}
	if b.cfg.FreePageReporting {
		f |= BalloonFReporting
	}
	return f
}

// QueueMaxSizes implements Device: inflate, deflate, stats and, when
// offered, free page reporting.
func (b *Balloon) QueueMaxSizes() []uint16 {
	n := 3
	if b.cfg.FreePageReporting {
		n++
	}
	sizes := make([]uint16, n)
	for i := range sizes {
		sizes[i] = balloonQueueSize
	}
	return sizes
}

// ReadConfig implements Device.
func (b *Balloon) ReadConfig(offset uint64, data []byte) {
	var cfg [balloonCfgSize]byte
	b.mu.Lock()
	binary.LittleEndian.PutUint32(cfg[0:], b.numPages)
	binary.LittleEndian.PutUint32(cfg[4:], b.actual)
	b.mu.Unlock()
	readConfigBytes(cfg[:], offset, data)
}

// WriteConfig implements Device; the driver writes only "actual".
func (b *Balloon) WriteConfig(offset uint64, data []byte) {
	if offset < 4 || offset+uint64(len(data)) > 8 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var cur [4]byte
	binary.LittleEndian.PutUint32(cur[:], b.actual)
	copy(cur[offset-4:], data)
	b.actual = binary.LittleEndian.Uint32(cur[:])
}

// SetTarget sets the balloon size the guest should reach, in 4 KiB pages
// (guest memory minus the target memory size), and tells the driver.
func (b *Balloon) SetTarget(pages uint32) {
	b.mu.Lock()
	b.numPages = pages
	notify := b.configChanged
	b.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// Target returns the requested balloon size in pages.
func (b *Balloon) Target() uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.numPages
}

// Actual returns the balloon size the driver reports, in pages.
func (b *Balloon) Actual() uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.actual
}

// Stats returns the last statistics the guest reported, and whether it
// has reported any.
func (b *Balloon) Stats() (BalloonStats, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Reported = make(map[uint16]bool, len(b.stats.Reported))
	for k, v := range b.stats.Reported {
		s.Reported[k] = v
	}
	return s, b.haveStats
}

// DiscardedPages returns how many 4 KiB pages were given back to the host
// through inflation and free page reporting.
func (b *Balloon) DiscardedPages() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.discarded
}

// RequestStats asks the guest for fresh statistics now.
func (b *Balloon) RequestStats() {
	select {
	case b.statsKick <- struct{}{}:
	default:
	}
}

// Activate implements Device.
func (b *Balloon) Activate(a Activation) error {
	if len(a.Queues) < 2 || !a.Queues[0].Ready() || !a.Queues[1].Ready() {
		return fmt.Errorf("virtio-balloon inflate and deflate queues not enabled")
	}
	b.mu.Lock()
	b.configChanged = a.ConfigChanged
	b.mu.Unlock()
	inflate, deflate := a.Queues[0], a.Queues[1]
	next := 2
	var statsQ, reportQ *Queue
	if a.Features&BalloonFStatsVQ != 0 && next < len(a.Queues) {
		statsQ = a.Queues[next]
		next++
	}
	if a.Features&BalloonFReporting != 0 && next < len(a.Queues) {
		reportQ = a.Queues[next]
	}
	b.w.start(func(stop <-chan struct{}) {
		serveQueue(stop, inflate, func() error { return b.drain(inflate, func(c *Chain) { b.inflate(a.Mem, c) }) })
	})
	b.w.start(func(stop <-chan struct{}) {
		// Deflated pages need no host action: the guest touching them again
		// faults fresh zero pages in.
		serveQueue(stop, deflate, func() error { return b.drain(deflate, func(*Chain) {}) })
	})
	if statsQ != nil && statsQ.Ready() {
		b.w.start(func(stop <-chan struct{}) { b.serveStats(stop, statsQ) })
	}
	if reportQ != nil && reportQ.Ready() {
		b.w.start(func(stop <-chan struct{}) {
			serveQueue(stop, reportQ, func() error { return b.drain(reportQ, func(c *Chain) { b.report(a.Mem, c) }) })
		})
	}
	return nil
}

// Reset implements Device.
func (b *Balloon) Reset() {
	b.w.stopAll()
	b.mu.Lock()
	b.configChanged = nil
	b.actual = 0
	b.mu.Unlock()
}

// drain handles and returns every available chain on q.
func (b *Balloon) drain(q *Queue, handle func(*Chain)) error {
	for {
		c, err := q.Pop()
		if err != nil {
			return err
		}
		if c == nil {
			return nil
		}
		handle(c)
		if err := q.Push(c.Head, 0); err != nil {
			return err
		}
		if err := q.Signal(); err != nil {
			return err
		}
	}
}

// inflate releases the pages whose 32-bit frame numbers the chain lists,
// merging runs of consecutive frames.
func (b *Balloon) inflate(mem *memory.Guest, c *Chain) {
	raw := make([]byte, c.ReadableLen()&^3)
	c.ReadAt(raw, 0)
	var start, n uint64
	flush := func() {
		if n > 0 {
			b.discard(mem, start<<balloonPageShift, n<<balloonPageShift)
		}
	}
	for i := 0; i < len(raw); i += 4 {
		pfn := uint64(binary.LittleEndian.Uint32(raw[i:]))
		if n > 0 && pfn == start+n {
			n++
			continue
		}
		flush()
		start, n = pfn, 1
	}
	flush()
}

// report releases the free ranges a free page report lists.
func (b *Balloon) report(mem *memory.Guest, c *Chain) {
	for i, buf := range c.Writable {
		b.discard(mem, c.WritableAddr[i], uint64(len(buf)))
	}
	for i, buf := range c.Readable {
		b.discard(mem, c.ReadableAddr[i], uint64(len(buf)))
	}
}

// discard gives [gpa, gpa+length) back to the host if it is guest RAM;
// frames outside guest memory are ignored, as they back nothing.
func (b *Balloon) discard(mem *memory.Guest, gpa, length uint64) {
	host, err := mem.Slice(gpa, length)
	if err != nil || length == 0 {
		return
	}
	if b.cfg.Discard != nil {
		err = b.cfg.Discard(gpa, length)
	} else {
		err = unix.Madvise(host, unix.MADV_DONTNEED)
	}
	if err == nil {
		b.mu.Lock()
		b.discarded += (length + balloonPageSize - 1) / balloonPageSize
		b.mu.Unlock()
	}
}

// serveStats runs the statistics protocol: the driver posts one buffer with
// its stats; the device keeps it and hands it back when it wants new ones.
func (b *Balloon) serveStats(stop <-chan struct{}, q *Queue) {
	var tick <-chan time.Time
	if b.cfg.StatsPeriod > 0 {
		t := time.NewTicker(b.cfg.StatsPeriod)
		defer t.Stop()
		tick = t.C
	}
	var held *Chain
	for {
		for held == nil {
			c, err := q.Pop()
			if err != nil {
				return
			}
			if c == nil {
				break
			}
			b.parseStats(c)
			held = c
		}
		select {
		case <-stop:
			return
		case <-q.Kick():
			continue
		case <-tick:
		case <-b.statsKick:
		}
		if held != nil {
			if q.Push(held.Head, 0) != nil || q.Signal() != nil {
				return
			}
			held = nil
		}
	}
}

func (b *Balloon) parseStats(c *Chain) {
	raw := make([]byte, min(c.ReadableLen(), 64*balloonStatSize))
	c.ReadAt(raw, 0)
	s := BalloonStats{Reported: map[uint16]bool{}, Updated: time.Now()}
	for i := 0; i+balloonStatSize <= len(raw); i += balloonStatSize {
		tag := binary.LittleEndian.Uint16(raw[i:])
		v := binary.LittleEndian.Uint64(raw[i+2:])
		p := s.field(tag)
		if p == nil {
			continue // unknown tags are skipped, as the spec allows
		}
		*p = v
		s.Reported[tag] = true
	}
	b.mu.Lock()
	b.stats, b.haveStats = s, true
	b.mu.Unlock()
}
