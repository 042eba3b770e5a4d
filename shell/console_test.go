package shell

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/driver"
)

// consoleConn is a connection with one running domain whose console is
// one end of an in-memory pipe; the other methods are not used.
type consoleConn struct {
	driver.Conn
	guest net.Conn // the guest's end
	host  net.Conn
}

func (c *consoleConn) LookupDomain(ref string) (driver.DomainInfo, error) {
	if ref != "vm1" {
		return driver.DomainInfo{}, driver.Errorf(driver.ErrNoDomain, "no domain with matching name '%s'", ref)
	}
	return driver.DomainInfo{ID: 1, Name: "vm1", State: driver.StateRunning}, nil
}

func (c *consoleConn) Console(name, devname string, force bool) (io.ReadWriteCloser, error) {
	return c.host, nil
}

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); sl.Close() })
	return m, sl
}

// readUntil reads from r until want appears; the deadline only guards
// against a hang.
func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 256)
		for !strings.Contains(b.String(), want) {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("read %q, want %q", s, want)
		}
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q", want)
	}
	return ""
}

func TestConsole(t *testing.T) {
	master, slave := openPTY(t)
	guest, host := net.Pipe()
	conn := &consoleConn{guest: guest, host: host}
	s := New(Options{Escape: "^]"})
	s.conn = conn
	s.Stdin, s.Stdout, s.Stderr = slave, slave, slave
	done := make(chan bool, 1)
	go func() { done <- s.RunLine("console vm1") }()

	readUntil(t, master, "Connected to domain 'vm1'\r\nEscape character is ^] (Ctrl + ])\r\n")
	// Guest output reaches the terminal.
	go guest.Write([]byte("login: "))
	readUntil(t, master, "login: ")
	// Keys reach the guest, unchanged by the (raw) terminal.
	master.Write([]byte("root\r"))
	readUntil(t, guest, "root\r")
	// The escape character ends the session; the terminal is restored.
	master.Write([]byte{0x1d})
	select {
	case ok := <-done:
		if !ok {
			t.Error("console failed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("console did not end on the escape character")
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("terminal left in raw mode (%v)", err)
	}
}

func TestConsoleNoTTY(t *testing.T) {
	var out, errs strings.Builder
	s := New(Options{})
	s.conn = &consoleConn{}
	s.Stdin, s.Stdout, s.Stderr = strings.NewReader(""), &out, &errs
	if s.RunLine("console vm1") {
		t.Error("console without a terminal succeeded")
	}
	if errs.String() != "error: Cannot run interactive console without a controlling TTY\n" {
		t.Errorf("stderr = %q", errs.String())
	}
}

// TestConsoleGuestCloses checks that a console the guest side closes ends
// the session without leaving a reader on the terminal.
func TestConsoleGuestCloses(t *testing.T) {
	master, slave := openPTY(t)
	guest, host := net.Pipe()
	s := New(Options{Escape: "^]"})
	s.conn = &consoleConn{guest: guest, host: host}
	s.Stdin, s.Stdout, s.Stderr = slave, slave, slave
	done := make(chan bool, 1)
	go func() { done <- s.RunLine("console vm1") }()
	readUntil(t, master, "Escape character is ^] (Ctrl + ])\r\n")
	guest.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("console did not end when the guest side closed")
	}
	// The next line typed goes to whoever reads the terminal next.
	master.Write([]byte("xyz\n"))
	readUntil(t, slave, "xyz")
}
