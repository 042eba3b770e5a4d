package virtio

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeNow checks the doorbell fast path: a doorbell thread runs the
// queue's handler itself when the device goroutine is idle, wakes the
// goroutine instead when the handler is busy, and never runs it once the
// service has ended or failed.
func TestServeNow(t *testing.T) {
	q := newQueue(0, 8)
	q.serveNow() // nothing serves the queue yet: only a kick
	select {
	case <-q.Kick():
	default:
		t.Fatal("serveNow without a handler did not kick")
	}

	var calls atomic.Int32
	gate := make(chan struct{})
	var block atomic.Bool
	fail := atomic.Bool{}
	handle := func() error {
		calls.Add(1)
		if block.Load() {
			<-gate
		}
		if fail.Load() {
			return errors.New("queue broken")
		}
		return nil
	}
	stop := make(chan struct{})
	ended := make(chan struct{})
	go func() { serveQueue(stop, q, handle); close(ended) }()
	waitCalls(t, &calls, 1) // serveQueue's first pass

	q.serveNow()
	if n := calls.Load(); n != 2 {
		t.Fatalf("idle queue: serveNow made %d handler calls in all, want 2 (one inline)", n)
	}

	// Busy: the goroutine is inside the handler; serveNow must not wait
	// for it, and the goroutine must run the handler again afterwards.
	block.Store(true)
	q.notify()
	waitCalls(t, &calls, 3)
	done := make(chan struct{})
	go func() { q.serveNow(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serveNow waited for a busy handler")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("busy queue: %d handler calls, want still 3", n)
	}
	block.Store(false)
	close(gate)
	waitCalls(t, &calls, 4) // the kick serveNow left behind

	// A failing handler ends the service; later doorbells do nothing.
	fail.Store(true)
	q.serveNow()
	<-ended
	before := calls.Load()
	q.serveNow()
	if n := calls.Load(); n != before {
		t.Errorf("handler ran after the service ended (%d calls, want %d)", n, before)
	}
	if q.inline.Load() != nil {
		t.Error("the inline handler is still set after serveQueue returned")
	}
	close(stop)
}

// TestServeNowExclusive rings the doorbell from several threads while the
// device goroutine is also kicked: the handler must never run twice at
// once, and no doorbell may be lost: after the last one the handler must
// run again (doorbells may coalesce). Run with -race too.
func TestServeNowExclusive(t *testing.T) {
	q := newQueue(0, 8)
	var inside, overlaps, calls, rung, seen atomic.Int32
	handle := func() error {
		if inside.Add(1) != 1 {
			overlaps.Add(1)
		}
		calls.Add(1)
		seen.Store(rung.Load()) // the work a real handler would pick up
		time.Sleep(10 * time.Microsecond)
		inside.Add(-1)
		return nil
	}
	stop := make(chan struct{})
	ended := make(chan struct{})
	go func() { serveQueue(stop, q, handle); close(ended) }()
	waitCalls(t, &calls, 1) // serving: doorbells may now run the handler inline
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				rung.Add(1)
				if i%2 == 0 {
					q.serveNow()
				} else {
					q.notify()
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for seen.Load() != rung.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("a doorbell was lost: the handler last saw %d of %d rings", seen.Load(), rung.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-ended
	if overlaps.Load() != 0 {
		t.Errorf("the handler ran concurrently with itself %d times", overlaps.Load())
	}
	n := calls.Load()
	q.serveNow()
	if calls.Load() != n {
		t.Error("the handler ran after serveQueue returned")
	}
}

func waitCalls(t *testing.T, calls *atomic.Int32, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("handler calls stuck at %d, want %d", calls.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
