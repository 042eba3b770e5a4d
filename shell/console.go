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
	if !isTerminal(os.Stdin) {
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

	fd := int(os.Stdin.Fd())
	old, err := makeRaw(fd)
	if err != nil {
		return fail(nil, "Cannot run interactive console without a controlling TTY")
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)

	esc := escapeByte(s.Escape)
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	go func() {
		io.Copy(os.Stdout, stream)
		stop()
	}()
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := os.Stdin.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] == esc {
					if i > 0 {
						stream.Write(buf[:i])
					}
					stop()
					return
				}
			}
			if n > 0 {
				if _, werr := stream.Write(buf[:n]); werr != nil {
					stop()
					return
				}
			}
			if err != nil {
				stop()
				return
			}
		}
	}()
	<-done
	return nil
}
