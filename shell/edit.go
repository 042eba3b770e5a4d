package shell

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

func init() {
	handlers["edit"] = cmdEdit
	handlers["net-edit"] = cmdNetEdit
	handlers["pool-edit"] = cmdPoolEdit
}

// editor returns the user's editor: $VISUAL, then $EDITOR, then vi.
func editor() string {
	for _, v := range []string{"VISUAL", "EDITOR"} {
		if e := os.Getenv(v); e != "" {
			return e
		}
	}
	return "vi"
}

// editText lets the user edit data in a temporary file and returns the
// result and whether it differs.
func (s *Shell) editText(data []byte, kind string) ([]byte, bool, error) {
	f, err := os.CreateTemp("", "vsh-"+kind+"-*.xml")
	if err != nil {
		return nil, false, fail(err, "failed to create temporary file")
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, false, fail(err, "failed to write temporary file")
	}
	if err := f.Close(); err != nil {
		return nil, false, fail(err, "failed to write temporary file")
	}
	return s.runEditor(f.Name(), data)
}

func (s *Shell) runEditor(file string, orig []byte) ([]byte, bool, error) {
	cmd := exec.Command("/bin/sh", "-c", editor()+" "+shellQuote(file))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, false, fail(nil, "%s: command failed: %s", editor(), err)
	}
	edited, err := os.ReadFile(file)
	if err != nil {
		return nil, false, fail(nil, "Failed to open file '%s': %s", file, sysText(err))
	}
	return edited, !bytes.Equal(edited, orig), nil
}

// editObject is virsh's edit workflow (tools/virsh-edit.c): dump the
// inactive XML, edit it, and redefine it; on failure offer "Try again?".
func (s *Shell) editObject(kind string, orig []byte, define func([]byte, bool) error, validate bool, notChanged, edited string) error {
	f, err := os.CreateTemp("", "vsh-"+kind+"-*.xml")
	if err != nil {
		return fail(err, "failed to create temporary file")
	}
	name := f.Name()
	defer os.Remove(name)
	_, werr := f.Write(orig)
	if cerr := f.Close(); werr != nil || cerr != nil {
		return fail(nil, "failed to write temporary file %s", name)
	}
	for {
		data, changed, err := s.runEditor(name, orig)
		if err != nil {
			return err
		}
		if !changed {
			s.extraf("%s\n", notChanged)
			return nil
		}
	define:
		derr := define(data, validate)
		if derr == nil {
			s.extraf("%s\n", edited)
			return nil
		}
		s.report(fail(derr, ""))
		if !isTerminal(os.Stdin) {
			return &cmdError{}
		}
		for {
			switch s.askReedit() {
			case 'y':
			case 'n':
				return &cmdError{}
			case 'i', 'f':
				validate = false
				goto define
			case '?':
				s.printf("y - yes, start editor again\nn - no, throw away my changes\ni - turn off validation and try to redefine again\nf - force, try to redefine again\n? - print this help\n")
				continue
			default:
				continue
			}
			break
		}
	}
}

// askReedit asks virsh's question and returns the answer, read as one
// key press in raw mode like virsh's vshAskReedit.
func (s *Shell) askReedit() byte {
	s.printf("Failed. Try again? [y,n,i,f,?]: ")
	fd := int(os.Stdin.Fd())
	old, err := makeRaw(fd)
	if err != nil {
		line, rerr := bufio.NewReader(os.Stdin).ReadString('\n')
		if rerr != nil && line == "" {
			return 'n'
		}
		line = strings.TrimSpace(strings.ToLower(line))
		if line == "" {
			return 0
		}
		return line[0]
	}
	var b [1]byte
	n, _ := os.Stdin.Read(b[:])
	unix.IoctlSetTermios(fd, unix.TCSETS, old)
	s.printf("\r\n")
	if n == 0 {
		return 'n'
	}
	c := b[0]
	if c >= 'A' && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c
}

// makeRaw puts the terminal fd in raw mode (cfmakeraw) and returns the
// previous settings.
func makeRaw(fd int) (*unix.Termios, error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return old, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func cmdEdit(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.DomainXML(d.Name, true)
	if err != nil {
		return fail(err, "")
	}
	return s.editObject("domain", xml, func(data []byte, validate bool) error {
		_, err := s.conn.DefineDomain(data, d.Name+".xml", validate)
		return err
	}, !c.Has("skip-validate"),
		"Domain '"+d.Name+"' XML configuration not changed.", "Domain '"+d.Name+"' XML configuration edited.")
}

func cmdNetEdit(s *Shell, c *Call) error {
	n, err := s.lookupNetwork(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.NetworkXML(n.Name, true)
	if err != nil {
		return fail(err, "")
	}
	return s.editObject("network", xml, func(data []byte, validate bool) error {
		_, err := s.conn.DefineNetwork(data, n.Name+".xml", validate)
		return err
	}, true, "Network "+n.Name+" XML configuration not changed.", "Network "+n.Name+" XML configuration edited.")
}

func cmdPoolEdit(s *Shell, c *Call) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	xml, err := s.conn.PoolXML(p.Name, true)
	if err != nil {
		return fail(err, "")
	}
	return s.editObject("pool", xml, func(data []byte, validate bool) error {
		_, err := s.conn.DefinePool(data, p.Name+".xml", validate)
		return err
	}, true, "Pool "+p.Name+" XML configuration not changed.", "Pool "+p.Name+" XML configuration edited.")
}
