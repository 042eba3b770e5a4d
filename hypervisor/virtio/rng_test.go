package virtio

import (
	"bytes"
	"testing"
)

func TestRNG(t *testing.T) {
	d := newTestDriver(t, NewRNG(RNGConfig{}))
	d.start(FeatureRingEventIdx, 16)
	head, addrs := d.add(0, in(100), in(156))
	d.notify(0)
	id, n := d.waitUsed(0)
	if id != head || n != 256 {
		t.Fatalf("used (%d, %d), want (%d, 256)", id, n, head)
	}
	got := append(append([]byte(nil), d.bytes(addrs[0], 100)...), d.bytes(addrs[1], 156)...)
	if bytes.Equal(got, make([]byte, 256)) {
		t.Fatalf("virtio-rng returned zeroes")
	}
	// A chain with only readable buffers gets nothing.
	d.add(0, out([]byte("x")))
	d.notify(0)
	if _, n := d.waitUsed(0); n != 0 {
		t.Fatalf("readable-only chain: used length %d", n)
	}
}

func TestRNGRateLimit(t *testing.T) {
	d := newTestDriver(t, NewRNG(RNGConfig{RateBytes: 64, RatePeriod: 1e6}))
	d.start(0, 16)
	total := 0
	for total < 256 {
		d.add(0, in(256-total))
		d.notify(0)
		_, n := d.waitUsed(0)
		if n > 64 {
			t.Fatalf("rate-limited device returned %d bytes in one request, limit 64", n)
		}
		total += int(n)
	}
}
