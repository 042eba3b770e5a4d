package shell

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/driver"
)

func init() { handlers["console"] = cmdConsole }

// ValidEscape reports whether e is an escape sequence virsh's -e accepts:
// "^" and a letter or one of @[\]^_, or a single character other than ^.
func ValidEscape(e string) bool {
	if len(e) == 2 && e[0] == '^' {
		c := e[1]
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '@' || c == '[' || c == '\\' || c == ']' || c == '^' || c == '_'
	}
	return len(e) == 1 && e[0] != '^'
}

// escapeByte returns the byte the escape sequence stands for ("^]" is
// Ctrl-], 0x1d).
func escapeByte(e string) byte {
	if len(e) == 2 && e[0] == '^' {
		c := e[1]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		return c & 037
	}
	if e == "" {
		return 0x1d
	}
	return e[0]
}

func cmdConsole(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	return s.console(d.Name, c.Str("devname"), c.Has("force"))
}

// console attaches the terminal to a domain's console until the escape
// character is typed or the console closes.
func (s *Shell) console(name, devname string, force bool) error {
	tty, ok := s.Stdin.(*os.File)
	if !ok || !isTerminal(tty) {
		return fail(nil, "Cannot run interactive console without a controlling TTY")
	}
	opener, ok := s.conn.(driver.ConsoleOpener)
	if !ok {
		return fail(driver.Errorf(driver.ErrNoSupport, "virDomainOpenConsole"), "Failed to get console of domain '%s'", name)
	}
	stream, err := opener.Console(name, devname, force)
	if err != nil {
		return fail(err, "")
	}
	defer stream.Close()
	s.extraf("Connected to domain '%s'\n", name)
	s.extraf("Escape character is %s", s.Escape)
	if len(s.Escape) == 2 && s.Escape[0] == '^' {
		s.extraf(" (Ctrl + %c)", s.Escape[1])
	}
	s.extraf("\n")

	fd := int(tty.Fd())
	old, err := makeRaw(fd)
	if err != nil {
		return fail(nil, "Cannot run interactive console without a controlling TTY")
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)

	esc := escapeByte(s.Escape)
	// wake interrupts the keyboard loop's poll when the guest side ends,
	// so that no reader is left behind to steal the next key press.
	var wake [2]int
	if err := unix.Pipe2(wake[:], unix.O_CLOEXEC); err != nil {
		return fail(err, "unable to create pipe")
	}
	defer unix.Close(wake[0])
	defer unix.Close(wake[1])
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	go func() {
		io.Copy(s.Stdout, stream)
		stop()
		unix.Write(wake[1], []byte{0})
	}()
	keys := make(chan struct{})
	go func() {
		defer close(keys)
		defer stop()
		buf := make([]byte, 1024)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake[0]), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil {
				if err == unix.EINTR {
					continue
				}
				return
			}
			if fds[1].Revents != 0 || fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) == 0 {
				return
			}
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return
			}
			if i := indexByte(buf[:n], esc); i >= 0 {
				if i > 0 {
					stream.Write(buf[:i])
				}
				return
			}
			if _, err := stream.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	<-done
	unix.Write(wake[1], []byte{0})
	<-keys
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
