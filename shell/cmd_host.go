package shell

import (
	"fmt"
	"io"
	"os"
	"strings"

	"vsh/schema"
)

// Version is vsh's version, printed by version, -v and -V.
const Version = "0.1.0"

func init() {
	for name, h := range map[string]handler{
		"version": cmdVersion, "nodeinfo": cmdNodeinfo, "capabilities": cmdCapabilities,
		"hostname": cmdHostname, "uri": cmdURI, "connect": cmdConnect,
		"cd": cmdCd, "pwd": cmdPwd, "echo": cmdEcho, "quit": cmdQuit, "exit": cmdQuit,
		"validate": cmdValidate,
	} {
		handlers[name] = h
	}
}

func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

func cmdVersion(s *Shell, c *Call) error {
	name, v, err := s.conn.HypervisorVersion()
	if err != nil {
		return fail(err, "failed to get the hypervisor version")
	}
	if c.Has("json") {
		return s.printJSON(map[string]string{"library": "vsh " + Version, "api": name + " " + Version,
			"hypervisor": name, "hypervisor_version": versionString(v)})
	}
	s.printf("Compiled against library: vsh %s\n", Version)
	s.printf("Using library: vsh %s\n", Version)
	s.printf("Using API: %s %s\n", name, Version)
	s.printf("Running hypervisor: %s %s\n", name, versionString(v))
	return nil
}

func cmdNodeinfo(s *Shell, c *Call) error {
	n, err := s.conn.NodeInfo()
	if err != nil {
		return fail(err, "failed to get node information")
	}
	if c.Has("json") {
		return s.printJSON(n)
	}
	s.printf("%-20s %s\n", "CPU model:", n.CPUModel)
	s.printf("%-20s %d\n", "CPU(s):", n.CPUs)
	s.printf("%-20s %d MHz\n", "CPU frequency:", n.MHz)
	s.printf("%-20s %d\n", "CPU socket(s):", n.SocketsPerNode)
	s.printf("%-20s %d\n", "Core(s) per socket:", n.CoresPerSocket)
	s.printf("%-20s %d\n", "Thread(s) per core:", n.ThreadsPerCore)
	s.printf("%-20s %d\n", "NUMA cell(s):", n.NUMANodes)
	s.printf("%-20s %d KiB\n", "Memory size:", n.MemoryKiB)
	return nil
}

func cmdCapabilities(s *Shell, c *Call) error {
	caps, err := s.conn.Capabilities()
	if err != nil {
		return fail(err, "failed to get capabilities")
	}
	s.printf("%s\n\n", trimNL(caps))
	return nil
}

func cmdHostname(s *Shell, c *Call) error {
	h, err := s.conn.Hostname()
	if err != nil {
		return fail(err, "failed to get hostname")
	}
	return s.printValue(c, "hostname", h)
}

func cmdURI(s *Shell, c *Call) error {
	return s.printValue(c, "uri", s.conn.URI())
}

func cmdConnect(s *Shell, c *Call) error {
	if c.Has("name") {
		s.URI = c.Str("name")
	}
	s.ReadOnly = c.Has("readonly")
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if err := s.Connect(); err != nil {
		return &cmdError{} // Connect printed virsh's lines.
	}
	return nil
}

func cmdCd(s *Shell, c *Call) error {
	if !s.interactive {
		return fail(nil, "cd: command valid only in interactive mode")
	}
	dir := c.Str("dir")
	if dir == "" {
		dir = os.Getenv("HOME")
		if dir == "" {
			dir = "/"
		}
	}
	if err := os.Chdir(dir); err != nil {
		return fail(nil, "cd: %s: %s: directory %s", sysText(err), "No such file or directory", dir)
	}
	return nil
}

// sysText returns the strerror-like text of a path error.
func sysText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

func cmdPwd(s *Shell, c *Call) error {
	dir, err := os.Getwd()
	if err != nil {
		return fail(nil, "pwd: cannot get current directory: %s", err)
	}
	s.printf("%s\n", dir)
	return nil
}

func cmdQuit(s *Shell, c *Call) error {
	s.quit = true
	return nil
}

// shellQuote quotes a word for a POSIX shell as virsh's
// virBufferEscapeShell does.
func shellQuote(w string) string {
	if w != "" && !strings.ContainsAny(w, "\"'`$\\ \t\n;&|<>(){}*?[]#~=%!") {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

func cmdEcho(s *Shell, c *Call) error {
	var args []string
	for _, a := range c.Argv("string") {
		if c.Has("shell") {
			a = shellQuote(a)
		}
		if c.Has("xml") {
			a = xmlEscape(a)
		}
		args = append(args, a)
	}
	out := strings.Join(args, " ")
	if c.Has("split") {
		// virsh prints each comma-separated piece on its own line.
		out = strings.Join(splitCommas(out), "\n") + "\n"
	}
	if c.Has("err") {
		s.errorLine(out)
		return nil
	}
	// Like virsh, no newline: the blank line after every command ends it.
	s.printf("%s", out)
	return nil
}

// splitCommas splits on ',' with ',,' as an escaped comma.
func splitCommas(a string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(a); i++ {
		if a[i] == ',' {
			if i+1 < len(a) && a[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(a[i])
	}
	return append(out, cur.String())
}

// cmdValidate checks files like virt-xml-validate: every error on stderr,
// "FILE validates" on stdout, failure unless all files are valid.
func cmdValidate(s *Shell, c *Call) error {
	failed := 0
	for _, file := range c.Argv("file") {
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(s.Stdin)
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			s.errorLine(fmt.Sprintf("Failed to open file '%s': %s", file, sysText(err)))
			failed++
			continue
		}
		errs := schema.Validate(file, data)
		if len(errs) == 0 {
			s.printf("%s validates\n", file)
			continue
		}
		for _, e := range errs {
			fmt.Fprintln(s.Stderr, e.Error())
		}
		fmt.Fprintf(s.Stderr, "%s fails to validate\n", file)
		failed++
	}
	if failed > 0 {
		return &cmdError{}
	}
	return nil
}
