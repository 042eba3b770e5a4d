package virtio

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

const rngQueueSize = 256

// RNGConfig configures a virtio-rng device.
type RNGConfig struct {
	// RateBytes bytes may be handed out per RatePeriod; zero means
	// unlimited (libvirt's <rate bytes= period=>).
	RateBytes  int
	RatePeriod time.Duration
}

// RNG is a virtio-rng (entropy) device fed by the host's getrandom.
type RNG struct {
	cfg RNGConfig
	w   workers
	// getrandom is unix.Getrandom; tests may replace it.
	getrandom func([]byte, int) (int, error)
}

// NewRNG returns a virtio-rng device.
func NewRNG(cfg RNGConfig) *RNG {
	if cfg.RateBytes > 0 && cfg.RatePeriod <= 0 {
		cfg.RatePeriod = time.Second
	}
	return &RNG{cfg: cfg, getrandom: unix.Getrandom}
}

// DeviceID implements Device.
func (r *RNG) DeviceID() uint32 { return IDRNG }

// Features implements Device.
func (r *RNG) Features() uint64 { return 0 }

// QueueMaxSizes implements Device.
func (r *RNG) QueueMaxSizes() []uint16 { return []uint16{rngQueueSize} }

// ReadConfig implements Device; virtio-rng has no configuration.
func (r *RNG) ReadConfig(offset uint64, data []byte) { clear(data) }

// WriteConfig implements Device.
func (r *RNG) WriteConfig(offset uint64, data []byte) {}

// Activate implements Device.
func (r *RNG) Activate(a Activation) error {
	q := a.Queues[0]
	if !q.Ready() {
		return fmt.Errorf("virtio-rng request queue not enabled")
	}
	r.w.start(func(stop <-chan struct{}) { r.serve(stop, q) })
	return nil
}

// Reset implements Device.
func (r *RNG) Reset() { r.w.stopAll() }

// serve fills request buffers, honouring the rate limit with a token bucket
// refilled once per period.
func (r *RNG) serve(stop <-chan struct{}, q *Queue) {
	budget := r.cfg.RateBytes
	var refill <-chan time.Time
	if r.cfg.RateBytes > 0 {
		t := time.NewTicker(r.cfg.RatePeriod)
		defer t.Stop()
		refill = t.C
	}
	var pending *Chain
	for {
		for {
			c := pending
			pending = nil
			if c == nil {
				var err error
				if c, err = q.Pop(); err != nil {
					return
				}
			}
			if c == nil {
				break
			}
			want := c.WritableLen()
			if r.cfg.RateBytes > 0 {
				if budget == 0 {
					pending = c
					break
				}
				want = min(want, budget)
				budget -= want
			}
			n := r.fill(c, want)
			if q.Push(c.Head, uint32(n)) != nil || q.Signal() != nil {
				return
			}
		}
		select {
		case <-stop:
			return
		case <-q.Kick():
		case <-refill:
			budget = r.cfg.RateBytes
		}
	}
}

// fill writes up to want random bytes into c's writable buffers.
func (r *RNG) fill(c *Chain, want int) int {
	n := 0
	for _, b := range c.Writable {
		if n == want {
			break
		}
		b = b[:min(len(b), want-n)]
		for len(b) > 0 {
			m, err := r.getrandom(b, 0)
			if err != nil {
				if err == unix.EINTR {
					continue
				}
				return n
			}
			b = b[m:]
			n += m
		}
	}
	return n
}
