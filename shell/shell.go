// Package shell is vsh's virsh-compatible command shell: the tokenizer and
// option grammar of virsh (tools/vsh.c), the command table with virsh's
// help texts, and the output of every command in virsh's exact layout. It
// only parses and prints; everything else goes through a driver.Conn.
//
// Read-only commands also accept --json; the JSON shapes are documented in
// JSON.md next to this file.
package shell

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"vsh/hypervisor/driver"
)

// Options are the global options of vsh (virsh's -c, -r, -q, -t, -e).
type Options struct {
	URI      string
	ReadOnly bool
	Quiet    bool
	Timing   bool
	// Escape is the console escape sequence ("^]" by default).
	Escape string
}

// Shell runs commands against one connection.
type Shell struct {
	Options
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	conn        driver.Conn
	table       map[string]*Command
	interactive bool
	quit        bool
	connFailed  bool
}

// New returns a shell with the given options writing to the process's
// standard streams. It does not connect yet; see Connect.
func New(opts Options) *Shell {
	if opts.Escape == "" {
		opts.Escape = "^]"
	}
	return &Shell{Options: opts, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, table: commandTable()}
}

// DefaultURI returns the connection URI used without -c: $VSH_DEFAULT_URI,
// else vsh:///system for root and vsh:///session for other users.
func DefaultURI() string {
	if u := os.Getenv("VSH_DEFAULT_URI"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "vsh:///system"
	}
	return "vsh:///session"
}

// Connect opens the connection named by Options.URI (or the default URI).
// On failure it prints virsh's two error lines and returns the error.
func (s *Shell) Connect() error {
	if s.URI == "" {
		s.URI = DefaultURI()
	}
	c, err := driver.Open(s.URI, s.ReadOnly)
	if err != nil {
		s.errorLine("failed to connect to the hypervisor")
		s.errorLine(err.Error())
		return err
	}
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn = c
	return nil
}

// Close closes the connection.
func (s *Shell) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Conn returns the open connection, or nil.
func (s *Shell) Conn() driver.Conn { return s.conn }

func (s *Shell) printf(format string, args ...any) { fmt.Fprintf(s.Stdout, format, args...) }

// extraf prints an informational message that -q suppresses.
func (s *Shell) extraf(format string, args ...any) {
	if !s.Quiet {
		fmt.Fprintf(s.Stdout, format, args...)
	}
}

func (s *Shell) errorLine(msg string) { fmt.Fprintf(s.Stderr, "error: %s\n", msg) }

// cmdError is a failed command: virsh's context line, then the driver's
// message on a second line when there is one.
type cmdError struct {
	context string
	err     error
}

func (e *cmdError) Error() string {
	if e.err == nil {
		return e.context
	}
	if e.context == "" {
		return e.err.Error()
	}
	return e.context + ": " + e.err.Error()
}

func (e *cmdError) Unwrap() error { return e.err }

// fail returns a command error with a context line and an optional cause.
func fail(err error, format string, args ...any) error {
	return &cmdError{context: fmt.Sprintf(format, args...), err: err}
}

func (s *Shell) report(err error) {
	var ce *cmdError
	if errors.As(err, &ce) {
		if ce.context != "" {
			s.errorLine(ce.context)
		}
		if ce.err != nil {
			s.errorLine(ce.err.Error())
		}
		return
	}
	s.errorLine(err.Error())
}

// RunLine tokenizes and runs a command string ("list; dominfo x") and
// reports whether the last command succeeded. A grammar error anywhere in
// the line runs nothing, as in virsh.
func (s *Shell) RunLine(line string) bool {
	cmds, err := Tokenize(line)
	if err != nil {
		s.errorLine(err.Error())
		return false
	}
	return s.runWords(cmds)
}

// RunArgs runs one command given as separate words (vsh CMD ARGS...),
// without any quote processing.
func (s *Shell) RunArgs(words []string) bool {
	return s.runWords([][]string{words})
}

func (s *Shell) runWords(cmds [][]string) bool {
	calls := make([]*Call, 0, len(cmds))
	for _, words := range cmds {
		call, err := Parse(s.table, words)
		if err != nil {
			s.errorLine(err.Error())
			return false
		}
		calls = append(calls, call)
	}
	ok := true
	for _, call := range calls {
		ok = s.run(call)
		if s.quit {
			break
		}
	}
	return ok
}

func (s *Shell) run(call *Call) bool {
	start := time.Now()
	var err error
	if call.Help {
		s.printCommandHelp(call.Cmd)
	} else if err = checkEmpty(call); err == nil {
		err = s.dispatch(call)
	}
	if err != nil {
		s.report(err)
	}
	if s.connFailed || call.Cmd.Name == "quit" || call.Cmd.Name == "exit" {
		return err == nil
	}
	if s.Timing {
		ms := float64(time.Since(start).Microseconds()) / 1000
		s.printf("\n(Time: %.3f ms)\n\n", ms)
	} else {
		s.extraf("\n")
	}
	return err == nil
}

// checkEmpty refuses empty values for value options, like virsh's
// vshCommandOptStringReq.
func checkEmpty(call *Call) error {
	for _, o := range call.Cmd.Options {
		if o.Kind == KindArgv || o.Kind == KindBool {
			continue
		}
		if v, ok := call.Values[o.Name]; ok && len(v) > 0 && v[0] == "" {
			if call.Cmd.Name == "desc" || call.Cmd.Name == "echo" {
				continue
			}
			return fail(nil, "Failed to get option '%s': Option argument is empty", o.Name)
		}
	}
	return nil
}

func (s *Shell) dispatch(call *Call) error {
	h, ok := handlers[call.Cmd.Name]
	if !ok {
		return fail(nil, "command '%s' is not implemented", call.Cmd.Name)
	}
	if s.conn == nil && !noConnect[call.Cmd.Name] {
		// Non-interactive runs connect on first use, so that validate,
		// echo and help work without a hypervisor.
		if err := s.Connect(); err != nil {
			// Connect printed virsh's lines; like virsh, which connects
			// before running anything, stop here.
			s.quit, s.connFailed = true, true
			return &cmdError{}
		}
	}
	return h(s, call)
}

// noConnect lists the commands that work without a connection.
var noConnect = map[string]bool{
	"cd": true, "echo": true, "exit": true, "quit": true, "help": true, "pwd": true, "connect": true, "validate": true, "complete": true,
}

// handler runs one command.
type handler func(s *Shell, c *Call) error

// handlers maps command names to their implementation; filled by the
// cmd_*.go files' init functions.
var handlers = map[string]handler{}

// extraCommands are vsh's commands that virsh does not have.
var extraCommands = []*Command{
	{Name: "validate", Group: "virsh", Brief: "validate XML files against the libvirt schemas",
		Synopsis:    "<file>...",
		Description: "Validates domain, network, storage pool and storage volume XML files\n    like virt-xml-validate. '-' reads standard input.",
		Options: []Option{
			{Name: "file", Kind: KindArgv, Required: true, Label: "[--file] <string>", Help: "files to validate ('-' for standard input)"},
		}},
}

// hiddenCommands work but are not listed by help (virsh's complete).
var hiddenCommands = []*Command{
	{Name: "complete", Group: "", Brief: "internal command for autocompletion",
		Synopsis: "[<string>]...", Description: "internal use only",
		Options: []Option{{Name: "string", Kind: KindArgv, Label: "<string>", Help: "partial string to autocomplete"}}},
}

// jsonCommands accept --json.
var jsonCommands = []string{
	"list", "dominfo", "domstate", "domid", "domname", "domuuid", "vcpucount",
	"net-list", "net-info", "net-uuid", "net-name", "net-dhcp-leases",
	"pool-list", "pool-info", "vol-list", "vol-info", "vol-path",
	"nodeinfo", "version", "hostname", "uri", "domiflist",
}

// commandTable builds the name -> command map from virsh's definitions
// plus vsh's additions.
func commandTable() map[string]*Command {
	t := map[string]*Command{}
	for _, c := range virshCommands {
		cp := *c
		cp.Options = append([]Option(nil), c.Options...)
		t[c.Name] = &cp
	}
	for _, c := range extraCommands {
		t[c.Name] = c
	}
	for _, c := range hiddenCommands {
		t[c.Name] = c
	}
	for _, n := range jsonCommands {
		if c := t[n]; c != nil {
			c.addOption(Option{Name: "json", Kind: KindBool, Label: "--json", Help: "print the result as JSON (see vsh's JSON.md)"})
		}
	}
	if c := t["define"]; c != nil {
		c.addOption(Option{Name: "no-validate", Kind: KindBool, Label: "--no-validate", Help: "do not validate the XML document against the schema"})
		for i := range c.Options {
			if c.Options[i].Name == "validate" {
				c.Options[i].Help = "validate the XML against the schema (the default)"
			}
		}
	}
	return t
}

// commandNames returns all command names, sorted.
func (s *Shell) commandNames() []string {
	names := make([]string, 0, len(s.table))
	for n := range s.table {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// yesNo returns virsh's yes/no text.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func trimNL(s string) string { return strings.TrimRight(s, "\n") }
