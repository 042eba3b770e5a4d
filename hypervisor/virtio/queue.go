package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"vsh/hypervisor/memory"
)

// Descriptor flags of a split virtqueue (virtio 1.1 §2.6.5).
const (
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4
)

// Ring flags.
const (
	availFNoInterrupt = 1
)

// descSize is the size of one descriptor table entry.
const descSize = 16

// MaxQueueSize is the largest queue size the transport accepts (the split
// ring limit).
const MaxQueueSize = 32768

// maxIndirect bounds an indirect table's entries so a guest cannot make one
// request walk an unbounded table.
const maxIndirect = 1024

// ErrQueueBroken is returned (wrapped) by queue operations once the guest has
// handed the device an invalid ring; the device then needs a reset.
var ErrQueueBroken = errors.New("virtqueue is broken")

// Chain is one descriptor chain popped from the avail ring, resolved to
// slices of guest memory. Readable buffers (driver to device) come first in
// a chain, writable ones (device to driver) after them; a device writes only
// into Writable, so it can never write a buffer the guest marked read-only.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
	// ReadableAddr and WritableAddr are the guest-physical addresses of the
	// buffers, for devices that hand guest ranges back to the host.
	ReadableAddr []uint64
	WritableAddr []uint64
}

// ReadableLen is the total size of the readable buffers.
func (c *Chain) ReadableLen() int {
	n := 0
	for _, b := range c.Readable {
		n += len(b)
	}
	return n
}

// WritableLen is the total size of the writable buffers.
func (c *Chain) WritableLen() int {
	n := 0
	for _, b := range c.Writable {
		n += len(b)
	}
	return n
}

// ReadAt copies readable bytes starting at off (counted across all readable
// buffers) into p and returns how many were copied.
func (c *Chain) ReadAt(p []byte, off int) int {
	return gather(c.Readable, p, off)
}

// WriteAt copies p into the writable buffers starting at off and returns how
// many bytes fit.
func (c *Chain) WriteAt(p []byte, off int) int {
	return scatter(c.Writable, p, off)
}

func gather(bufs [][]byte, p []byte, off int) int {
	n := 0
	for _, b := range bufs {
		if len(p) == n {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(p[n:], b[off:])
		off = 0
	}
	return n
}

func scatter(bufs [][]byte, p []byte, off int) int {
	n := 0
	for _, b := range bufs {
		if len(p) == n {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(b[off:], p[n:])
		off = 0
	}
	return n
}

// sliceBufs returns the sub-range [off, off+n) of a buffer list as a new list
// aliasing the same memory.
func sliceBufs(bufs [][]byte, off, n int) [][]byte {
	var out [][]byte
	for _, b := range bufs {
		if n == 0 {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		if len(b) > n {
			b = b[:n]
		}
		out = append(out, b)
		n -= len(b)
	}
	return out
}

// Queue is one split virtqueue. The transport configures it from the
// driver's register writes; after activation one device goroutine owns the
// consuming side (Pop, Push, Signal) of each queue.
type Queue struct {
	index   int
	maxSize uint16

	// Driver-programmed configuration; only changed by the transport while
	// the device is not running.
	size      uint16
	ready     bool
	descAddr  uint64
	availAddr uint64
	usedAddr  uint64

	mem      *memory.Guest
	eventIdx bool
	indirect bool

	lastAvail  uint16 // next avail ring slot to consume
	usedIdx    uint16 // next used ring slot to fill
	signalled  uint16 // usedIdx at the last interrupt (EVENT_IDX)
	signalSeen bool   // signalled is valid

	kick chan struct{}
	// serving is held while the queue's handler runs; inline, when set,
	// is that handler, which a doorbell thread may run itself (see
	// serveNow) instead of waking the device goroutine.
	serving sync.Mutex
	inline  atomic.Pointer[func() error]

	raise  func()      // raises the used-buffer interrupt
	fail   func(error) // marks the device NEEDS_RESET
	broken error
}

func newQueue(index int, maxSize uint16) *Queue {
	return &Queue{index: index, maxSize: maxSize, kick: make(chan struct{}, 1)}
}

// Index is the queue's index on its device.
func (q *Queue) Index() int { return q.index }

// Size is the queue size the driver chose.
func (q *Queue) Size() uint16 { return q.size }

// Ready reports whether the driver enabled the queue.
func (q *Queue) Ready() bool { return q.ready }

// Kick returns the channel that receives a value whenever the driver
// notifies the queue. Notifications coalesce: one value may stand for many.
func (q *Queue) Kick() <-chan struct{} { return q.kick }

// Err returns the error that broke the queue, or nil.
func (q *Queue) Err() error { return q.broken }

// notify wakes the device goroutine serving the queue.
func (q *Queue) notify() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// serveNow runs the queue's handler on the calling thread when it is free,
// saving the device goroutine's wake-up on the request path; otherwise,
// or when the handler fails, it wakes the goroutine as notify does. Only
// doorbell threads that may block call it: never a vCPU.
func (q *Queue) serveNow() {
	h := q.inline.Load()
	if h == nil || !q.serving.TryLock() {
		q.notify()
		return
	}
	if q.inline.Load() != h {
		// serveQueue ended between the two loads: the device stopped.
		q.serving.Unlock()
		return
	}
	err := (*h)()
	q.serving.Unlock()
	if err != nil {
		// The goroutine meets the same error and ends the service.
		q.inline.Store(nil)
		q.notify()
	}
}

// reset forgets the driver's configuration.
func (q *Queue) reset() {
	q.size = q.maxSize
	q.ready = false
	q.descAddr, q.availAddr, q.usedAddr = 0, 0, 0
	q.lastAvail, q.usedIdx, q.signalled, q.signalSeen = 0, 0, 0, false
	q.broken = nil
	select {
	case <-q.kick:
	default:
	}
}

// validate checks the ring layout the driver programmed before the queue is
// enabled: power-of-two size, alignment, and rings inside guest memory.
func (q *Queue) validate(mem *memory.Guest) error {
	n := uint64(q.size)
	if q.size == 0 || q.size > q.maxSize || q.size&(q.size-1) != 0 {
		return fmt.Errorf("queue %d: size %d is not a power of two up to %d", q.index, q.size, q.maxSize)
	}
	if q.descAddr%16 != 0 || q.availAddr%2 != 0 || q.usedAddr%4 != 0 {
		return fmt.Errorf("queue %d: misaligned rings (desc %#x, avail %#x, used %#x)", q.index, q.descAddr, q.availAddr, q.usedAddr)
	}
	for _, r := range []struct {
		name      string
		addr, len uint64
	}{{"descriptor table", q.descAddr, descSize * n}, {"avail ring", q.availAddr, 6 + 2*n}, {"used ring", q.usedAddr, 6 + 8*n}} {
		if _, err := mem.Slice(r.addr, r.len); err != nil {
			return fmt.Errorf("queue %d: %s: %w", q.index, r.name, err)
		}
	}
	return nil
}

// setBroken records a guest error, marks the device NEEDS_RESET and returns
// the wrapped error.
func (q *Queue) setBroken(err error) error {
	if q.broken == nil {
		q.broken = fmt.Errorf("%w: queue %d: %v", ErrQueueBroken, q.index, err)
		if q.fail != nil {
			q.fail(q.broken)
		}
	}
	return q.broken
}

// fenceWord is the target of a locked no-op used as a full memory barrier.
var fenceWord atomic.Uint32

// fence orders this goroutine's earlier stores before its later loads, as
// the virtio memory model requires around event index updates.
func fence() { fenceWord.Add(0) }

func (q *Queue) availIdx() (uint16, error) {
	return load16(q.mem, q.availAddr+2)
}

// Pop returns the next available descriptor chain, or nil when the ring is
// empty. An invalid ring breaks the queue: Pop then returns an error wrapping
// ErrQueueBroken and the device is marked NEEDS_RESET.
func (q *Queue) Pop() (*Chain, error) {
	if q.broken != nil {
		return nil, q.broken
	}
	if !q.ready {
		return nil, nil
	}
	avail, err := q.availIdx()
	if err != nil {
		return nil, q.setBroken(err)
	}
	if avail == q.lastAvail {
		if !q.eventIdx {
			return nil, nil
		}
		// Ask to be notified at the next entry, then look again in case the
		// driver added one before it could see the request.
		if err := store16(q.mem, q.usedAddr+4+8*uint64(q.size), q.lastAvail); err != nil {
			return nil, q.setBroken(err)
		}
		fence()
		if avail, err = q.availIdx(); err != nil {
			return nil, q.setBroken(err)
		}
		if avail == q.lastAvail {
			return nil, nil
		}
	}
	if pending := avail - q.lastAvail; pending > q.size {
		return nil, q.setBroken(fmt.Errorf("avail index jumped from %d to %d with queue size %d", q.lastAvail, avail, q.size))
	}
	head, err := q.mem.Uint16(q.availAddr + 4 + 2*uint64(q.lastAvail%q.size))
	if err != nil {
		return nil, q.setBroken(err)
	}
	c, err := q.walk(head)
	if err != nil {
		return nil, q.setBroken(err)
	}
	q.lastAvail++
	return c, nil
}

// walk resolves the chain starting at head, checking every index, address,
// length and the chain length.
func (q *Queue) walk(head uint16) (*Chain, error) {
	if head >= q.size {
		return nil, fmt.Errorf("head descriptor %d out of range (size %d)", head, q.size)
	}
	c := &Chain{Head: head}
	// Readable buffers precede writable ones, so one list holds both.
	bufs := make([][]byte, 0, 4)
	addrs := make([]uint64, 0, 4)
	readable := 0
	table, tableLen := q.descAddr, uint64(q.size)
	idx := uint64(head)
	seen := 0
	indirect := false
	for {
		seen++
		if seen > int(tableLen) {
			return nil, fmt.Errorf("descriptor chain from %d is longer than its table (%d entries): loop", head, tableLen)
		}
		raw, err := q.mem.Slice(table+idx*descSize, descSize)
		if err != nil {
			return nil, fmt.Errorf("descriptor %d: %w", idx, err)
		}
		addr := binary.LittleEndian.Uint64(raw[0:])
		length := binary.LittleEndian.Uint32(raw[8:])
		flags := binary.LittleEndian.Uint16(raw[12:])
		next := binary.LittleEndian.Uint16(raw[14:])
		if flags&descFIndirect != 0 {
			switch {
			case !q.indirect:
				return nil, fmt.Errorf("descriptor %d is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated", idx)
			case indirect:
				return nil, fmt.Errorf("nested indirect descriptor %d", idx)
			case flags&descFNext != 0:
				return nil, fmt.Errorf("indirect descriptor %d also has NEXT", idx)
			case length == 0 || length%descSize != 0 || length/descSize > maxIndirect:
				return nil, fmt.Errorf("indirect table of %d bytes is not 1..%d descriptors", length, maxIndirect)
			}
			if _, err := q.mem.Slice(addr, uint64(length)); err != nil {
				return nil, fmt.Errorf("indirect table: %w", err)
			}
			table, tableLen, idx, seen, indirect = addr, uint64(length/descSize), 0, 0, true
			continue
		}
		buf, err := q.mem.Slice(addr, uint64(length))
		if err != nil {
			return nil, fmt.Errorf("descriptor %d buffer: %w", idx, err)
		}
		if flags&descFWrite == 0 {
			if readable < len(bufs) {
				return nil, fmt.Errorf("descriptor %d is readable after a writable one", idx)
			}
			readable++
		}
		bufs = append(bufs, buf)
		addrs = append(addrs, addr)
		if flags&descFNext == 0 {
			c.Readable, c.Writable = bufs[:readable:readable], bufs[readable:]
			c.ReadableAddr, c.WritableAddr = addrs[:readable:readable], addrs[readable:]
			if len(c.Writable) == 0 {
				c.Writable, c.WritableAddr = nil, nil
			}
			return c, nil
		}
		idx = uint64(next)
		if idx >= tableLen {
			return nil, fmt.Errorf("next descriptor %d out of range (table of %d)", idx, tableLen)
		}
	}
}

// Push returns a chain to the driver through the used ring, reporting that
// written bytes were written into its writable buffers. Call Signal after
// one or more Pushes to interrupt the driver.
func (q *Queue) Push(head uint16, written uint32) error {
	if q.broken != nil {
		return q.broken
	}
	slot := q.usedAddr + 4 + 8*uint64(q.usedIdx%q.size)
	elem, err := q.mem.Slice(slot, 8)
	if err != nil {
		return q.setBroken(err)
	}
	binary.LittleEndian.PutUint32(elem[0:], uint32(head))
	binary.LittleEndian.PutUint32(elem[4:], written)
	q.usedIdx++
	// The element must be visible before the index that publishes it.
	if err := store16(q.mem, q.usedAddr+2, q.usedIdx); err != nil {
		return q.setBroken(err)
	}
	return nil
}

// load16 and store16 access a 16-bit ring field shared with the driver
// (ring indexes and event fields) atomically, through the aligned 32-bit
// word that contains it when that word is inside guest memory: this gives
// the acquire/release ordering the virtio memory model asks for.
func load16(mem *memory.Guest, gpa uint64) (uint16, error) {
	if w, shift, ok := word16(mem, gpa); ok {
		return uint16(atomic.LoadUint32(w) >> shift), nil
	}
	v, err := mem.Uint16(gpa)
	fence()
	return v, err
}

func store16(mem *memory.Guest, gpa uint64, v uint16) error {
	if w, shift, ok := word16(mem, gpa); ok {
		for {
			old := atomic.LoadUint32(w)
			if atomic.CompareAndSwapUint32(w, old, old&^(0xffff<<shift)|uint32(v)<<shift) {
				return nil
			}
		}
	}
	fence()
	err := mem.PutUint16(gpa, v)
	fence()
	return err
}

func word16(mem *memory.Guest, gpa uint64) (*uint32, uint, bool) {
	if gpa%2 != 0 {
		return nil, 0, false
	}
	s, err := mem.Slice(gpa&^3, 4)
	if err != nil {
		return nil, 0, false
	}
	p := unsafe.Pointer(&s[0])
	if uintptr(p)%4 != 0 {
		return nil, 0, false
	}
	return (*uint32)(p), uint(gpa%4) * 8, true
}

// Signal raises the used-buffer interrupt if the driver wants one for the
// entries pushed since the last signal (VIRTIO_RING_F_EVENT_IDX or the
// avail ring's NO_INTERRUPT flag).
func (q *Queue) Signal() error {
	if q.broken != nil {
		return q.broken
	}
	fence()
	need := true
	if q.eventIdx {
		ev, err := load16(q.mem, q.availAddr+4+2*uint64(q.size))
		if err != nil {
			return q.setBroken(err)
		}
		if q.signalSeen {
			// vring_need_event: interrupt if used_event is in (old, new].
			need = q.usedIdx-ev-1 < q.usedIdx-q.signalled
		}
		q.signalled, q.signalSeen = q.usedIdx, true
	} else {
		flags, err := load16(q.mem, q.availAddr)
		if err != nil {
			return q.setBroken(err)
		}
		need = flags&availFNoInterrupt == 0
	}
	if need && q.raise != nil {
		q.raise()
	}
	return nil
}
