package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// virtio-console feature bits.
const (
	ConsoleFSize       = 1 << 0
	ConsoleFMultiport  = 1 << 1
	ConsoleFEmergWrite = 1 << 2
)

const (
	consoleQueueSize = 256
	consoleCfgSize   = 12
	// consoleInputMax bounds input waiting for the guest to read it.
	consoleInputMax = 64 << 10
)

// ErrConsoleClosed is returned by Input once the console is closed.
var ErrConsoleClosed = errors.New("virtio console is closed")

// Console is a single-port virtio-console: guest output goes to an
// io.Writer, host input is queued with Input.
type Console struct {
	out io.Writer

	mu      sync.Mutex
	space   *sync.Cond // signalled when pending shrinks or on close
	pending []byte
	closed  bool
	wake    chan struct{} // input arrived
	outMu   sync.Mutex

	w workers
}

// NewConsole returns a virtio console writing guest output to out.
func NewConsole(out io.Writer) *Console {
	c := &Console{out: out, wake: make(chan struct{}, 1)}
	c.space = sync.NewCond(&c.mu)
	return c
}

// DeviceID implements Device.
func (c *Console) DeviceID() uint32 { return IDConsole }

// Features implements Device.
func (c *Console) Features() uint64 { return ConsoleFEmergWrite }

// QueueMaxSizes implements Device: receiveq and transmitq of port 0.
func (c *Console) QueueMaxSizes() []uint16 { return []uint16{consoleQueueSize, consoleQueueSize} }

// ReadConfig implements Device: cols, rows, max_nr_ports, emerg_wr.
func (c *Console) ReadConfig(offset uint64, data []byte) {
	var cfg [consoleCfgSize]byte
	binary.LittleEndian.PutUint32(cfg[4:], 1)
	readConfigBytes(cfg[:], offset, data)
}

// WriteConfig implements Device: a write to emerg_wr outputs one character
// even before the driver is running.
func (c *Console) WriteConfig(offset uint64, data []byte) {
	if offset == 8 && len(data) >= 1 {
		c.write(data[:1])
	}
}

func (c *Console) write(p []byte) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.out != nil {
		c.out.Write(p) // a failing sink must not stall the guest
	}
}

// Input queues p for the guest, blocking while more than 64 KiB is waiting
// for the guest to read. It fails only once the console is closed.
func (c *Console) Input(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(p) {
		if c.closed {
			return n, ErrConsoleClosed
		}
		room := consoleInputMax - len(c.pending)
		if room == 0 {
			c.space.Wait()
			continue
		}
		m := min(room, len(p)-n)
		c.pending = append(c.pending, p[n:n+m]...)
		n += m
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return n, nil
}

// Close stops the device and fails blocked and future Input calls.
func (c *Console) Close() error {
	c.w.stopAll()
	c.mu.Lock()
	c.closed = true
	c.space.Broadcast()
	c.mu.Unlock()
	return nil
}

// Activate implements Device.
func (c *Console) Activate(a Activation) error {
	rx, tx := a.Queues[0], a.Queues[1]
	if !rx.Ready() || !tx.Ready() {
		return fmt.Errorf("virtio-console port 0 queues not enabled")
	}
	c.w.start(func(stop <-chan struct{}) { c.serveRX(stop, rx) })
	c.w.start(func(stop <-chan struct{}) {
		serveQueue(stop, tx, func() error { return c.transmit(tx) })
	})
	return nil
}

// Reset implements Device. Input not yet delivered stays queued for the
// next driver.
func (c *Console) Reset() { c.w.stopAll() }

// transmit writes every available output chain to the sink.
func (c *Console) transmit(q *Queue) error {
	for {
		ch, err := q.Pop()
		if err != nil {
			return err
		}
		if ch == nil {
			return nil
		}
		for _, b := range ch.Readable {
			c.write(b)
		}
		if err := q.Push(ch.Head, 0); err != nil {
			return err
		}
		if err := q.Signal(); err != nil {
			return err
		}
	}
}

// serveRX moves pending input into receive buffers as both become
// available.
func (c *Console) serveRX(stop <-chan struct{}, q *Queue) {
	for {
		for {
			c.mu.Lock()
			empty := len(c.pending) == 0
			c.mu.Unlock()
			if empty {
				break
			}
			ch, err := q.Pop()
			if err != nil {
				return
			}
			if ch == nil {
				break
			}
			c.mu.Lock()
			n := ch.WriteAt(c.pending, 0)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
			}
			c.space.Broadcast()
			c.mu.Unlock()
			if q.Push(ch.Head, uint32(n)) != nil || q.Signal() != nil {
				return
			}
		}
		select {
		case <-stop:
			return
		case <-q.Kick():
		case <-c.wake:
		}
	}
}
