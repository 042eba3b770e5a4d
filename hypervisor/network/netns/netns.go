// Package netns runs code in a private network namespace, for tests and
// benchmarks that need taps, bridges and sockets without touching the
// host's own network.
//
// A network namespace belongs to a thread, not a process, so a Thread is
// one locked OS thread that unshared its namespace and runs the functions
// given to Do. What those functions create lives in the namespace: network
// devices, sockets (which keep their namespace wherever they are used
// later), and processes forked from the thread (os/exec forks from the
// calling thread), such as a VMM that opens a tap or ip(8) configuring one.
// The namespace disappears when the Thread is closed and the last process
// and socket in it are gone.
package netns

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Thread is an OS thread in a network namespace of its own.
type Thread struct {
	calls chan func()
	once  sync.Once
	done  chan struct{}
}

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("network namespace thread closed")

// New starts a thread in a new network namespace. It fails where the
// caller may not create one (it needs CAP_SYS_ADMIN).
func New() (*Thread, error) {
	t := &Thread{calls: make(chan func()), done: make(chan struct{})}
	ready := make(chan error)
	go func() {
		// Never unlocked: the runtime ends the thread with the goroutine,
		// so no other goroutine ever runs in the namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare a network namespace: %w", err)
			return
		}
		close(ready)
		for {
			select {
			case fn := <-t.calls:
				fn()
			case <-t.done:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}

// Do runs fn on the thread, in the namespace, and returns its error. Calls
// from several goroutines run one at a time.
func (t *Thread) Do(fn func() error) error {
	result := make(chan error, 1)
	select {
	case t.calls <- func() { result <- fn() }:
		return <-result
	case <-t.done:
		return ErrClosed
	}
}

// Close ends the thread. Processes started from it keep the namespace
// alive until they exit.
func (t *Thread) Close() {
	t.once.Do(func() { close(t.done) })
}
