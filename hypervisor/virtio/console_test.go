package virtio

import (
	"bytes"
	"sync"
	"testing"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConsoleOutput(t *testing.T) {
	var out syncBuffer
	con := NewConsole(&out)
	t.Cleanup(func() { con.Close() })
	d := newTestDriver(t, con)
	d.start(FeatureRingEventIdx|ConsoleFEmergWrite, 32)
	d.add(1, out1("hello, "), out1("world\n"))
	d.notify(1)
	d.waitUsed(1)
	if got := out.String(); got != "hello, world\n" {
		t.Fatalf("console output %q", got)
	}
	d.mmio.Write(RegConfig+8, []byte{'!', 0, 0, 0})
	if got := out.String(); got != "hello, world\n!" {
		t.Fatalf("emergency write: output %q", got)
	}
	if d.read32(RegConfig+4) != 1 {
		t.Errorf("max_nr_ports is not 1")
	}
}

func out1(s string) buf { return out([]byte(s)) }

func TestConsoleInput(t *testing.T) {
	con := NewConsole(nil)
	t.Cleanup(func() { con.Close() })
	d := newTestDriver(t, con)
	d.start(FeatureRingEventIdx, 32)

	// Input before the guest posted buffers waits for them.
	if n, err := con.Input([]byte("ls -l\n")); n != 6 || err != nil {
		t.Fatalf("Input: %d, %v", n, err)
	}
	_, addrs := d.add(0, in(4))
	d.notify(0)
	if _, n := d.waitUsed(0); n != 4 || string(d.bytes(addrs[0], 4)) != "ls -" {
		t.Fatalf("first receive: %d bytes %q", n, d.bytes(addrs[0], 4))
	}
	_, addrs = d.add(0, in(64))
	d.notify(0)
	if _, n := d.waitUsed(0); n != 2 || string(d.bytes(addrs[0], 2)) != "l\n" {
		t.Fatalf("second receive: %d bytes %q", n, d.bytes(addrs[0], uint64(n)))
	}

	// A buffer posted first is filled when input arrives.
	_, addrs = d.add(0, in(64))
	d.notify(0)
	con.Input([]byte("x"))
	if _, n := d.waitUsed(0); n != 1 || d.bytes(addrs[0], 1)[0] != 'x' {
		t.Fatalf("third receive: %d bytes", n)
	}
}

func TestConsoleInputBlocksUntilClose(t *testing.T) {
	con := NewConsole(nil)
	done := make(chan error)
	go func() {
		_, err := con.Input(make([]byte, consoleInputMax+1))
		done <- err
	}()
	con.Close()
	if err := <-done; err != ErrConsoleClosed {
		t.Fatalf("Input after Close: %v", err)
	}
}
