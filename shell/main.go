package shell

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

const usageHeader = `vsh [options]... [<command_string>]
vsh [options]... <command> [args...]

  options:
    -c | --connect=URI      hypervisor connection URI
    -d | --debug=NUM        debug level [0-4]
    -e | --escape <char>    set escape sequence for console
    -h | --help             this help
    -k | --keepalive-interval=NUM
                            keepalive interval in seconds, 0 for disable
    -K | --keepalive-count=NUM
                            number of possible missed keepalive messages
    -l | --log=FILE         output logging to file
    -q | --quiet            quiet mode
    -r | --readonly         connect readonly
    -t | --timing           print timing information
    -v                      short version
    -V                      long version
         --version[=TYPE]   version, TYPE is short or long (default short)
  commands (non interactive mode):

`

// Main runs vsh with the given arguments (without the program name) and
// returns the process exit status: 0 or 1 from the last command, 0 for an
// interactive session, as virsh does.
func Main(args []string) int {
	sh := New(Options{})
	return sh.Main(args)
}

// longOptions maps vsh's long options to their short letters and says
// whether they take a value.
var longOptions = map[string]struct {
	short    byte
	hasValue bool
}{
	"connect": {'c', true}, "debug": {'d', true}, "escape": {'e', true}, "help": {'h', false},
	"keepalive-interval": {'k', true}, "keepalive-count": {'K', true}, "log": {'l', true},
	"quiet": {'q', false}, "readonly": {'r', false}, "timing": {'t', false},
}

// Main parses global options like virsh's getopt_long loop (options stop
// at the first non-option) and runs the chosen mode.
func (s *Shell) Main(args []string) int {
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		var opt byte
		var value string
		hasValue := false
		if strings.HasPrefix(a, "--") {
			name, v, eq := strings.Cut(a[2:], "=")
			if name == "version" {
				if v == "long" {
					s.printLongVersion()
				} else if !eq || v == "short" {
					s.printf("%s\n", Version)
				} else {
					s.errorLine(fmt.Sprintf("unknown version type '%s'", v))
					return 1
				}
				return 0
			}
			lo, ok := longOptions[name]
			if !ok {
				s.errorLine(fmt.Sprintf("unsupported option '%s'. See --help.", a))
				return 1
			}
			opt = lo.short
			if lo.hasValue {
				if eq {
					value, hasValue = v, true
				} else if i+1 < len(args) {
					i++
					value, hasValue = args[i], true
				} else {
					s.errorLine(fmt.Sprintf("option '-%c'/'--%s' requires an argument", opt, name))
					return 1
				}
			}
			if rc, done := s.globalOption(opt, value, hasValue); done {
				return rc
			}
			continue
		}
		// A cluster of short options, "-qr" or "-cURI".
		for j := 1; j < len(a); j++ {
			opt = a[j]
			needs := strings.IndexByte("cdekKl", opt) >= 0
			if !needs {
				if strings.IndexByte("hqrtvV", opt) < 0 {
					s.errorLine(fmt.Sprintf("unsupported option '-%c'. See --help.", opt))
					return 1
				}
				if rc, done := s.globalOption(opt, "", false); done {
					return rc
				}
				continue
			}
			if j+1 < len(a) {
				value = a[j+1:]
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				long := map[byte]string{'c': "connect", 'd': "debug", 'e': "escape", 'k': "keepalive-interval", 'K': "keepalive-count", 'l': "log"}[opt]
				s.errorLine(fmt.Sprintf("option '-%c'/'--%s' requires an argument", opt, long))
				return 1
			}
			if rc, done := s.globalOption(opt, value, true); done {
				return rc
			}
			break
		}
	}
	rest := args[i:]
	defer s.Close()
	switch {
	case len(rest) == 0:
		if err := s.Connect(); err != nil {
			return 1
		}
		return s.Interactive()
	case len(rest) == 1:
		return exitCode(s.RunLine(rest[0]))
	default:
		return exitCode(s.RunArgs(rest))
	}
}

func exitCode(ok bool) int {
	if ok {
		return 0
	}
	return 1
}

// globalOption applies one option; done reports that vsh should exit
// with rc now (-h, -v, -V, or an invalid value).
func (s *Shell) globalOption(opt byte, value string, _ bool) (rc int, done bool) {
	switch opt {
	case 'c':
		s.URI = value
	case 'q':
		s.Quiet = true
	case 'r':
		s.ReadOnly = true
	case 't':
		s.Timing = true
	case 'e':
		if !ValidEscape(value) {
			s.errorLine(fmt.Sprintf("Invalid string '%s' for escape sequence", value))
			return 1, true
		}
		s.Escape = value
	case 'd', 'k', 'K':
		for _, c := range value {
			if c < '0' || c > '9' {
				s.errorLine(fmt.Sprintf("option -%c takes a numeric argument", opt))
				return 1, true
			}
		}
	case 'l':
		// Logging to a file is accepted for compatibility; vsh keeps no
		// debug log.
	case 'h':
		s.printUsage()
		return 0, true
	case 'v':
		s.printf("%s\n", Version)
		return 0, true
	case 'V':
		s.printLongVersion()
		return 0, true
	}
	return 0, false
}

func (s *Shell) printUsage() {
	s.printf("%s", usageHeader)
	for _, g := range groups {
		s.printf("%s\n", strings.TrimSuffix(strings.TrimSuffix(groupLine(g), "\n"), ":"))
		for _, c := range s.groupCommands(g.Keyword) {
			s.printf("    %-30s %s\n", c.Name, c.Brief)
		}
		s.printf("\n")
	}
	s.printf("\n  (specify help <group> for details about the commands in the group)\n\n  (specify help <command> for details about the command)\n\n")
}

func (s *Shell) printLongVersion() {
	s.printf("Vsh command line tool, version %s\n\n", Version)
	s.printf("Compiled with support for:\n")
	s.printf(" Hypervisors: KVM Test\n")
	s.printf(" Networking: Bridging\n")
	s.printf(" Storage: Dir\n")
	s.printf(" Miscellaneous: Readline\n")
}

const banner = "Welcome to vsh, the virtualization interactive terminal.\n\nType:  'help' for help with commands\n       'quit' to quit\n\n"

func (s *Shell) prompt() string {
	if s.ReadOnly {
		return "vsh > "
	}
	return "vsh # "
}

// Interactive runs the shell loop: readline with history and completion
// on a terminal; otherwise it reads commands from stdin line by line,
// echoing each after the prompt as virsh does. It always returns 0.
func (s *Shell) Interactive() int {
	s.interactive = true
	if !s.Quiet {
		s.printf("%s", banner)
	}
	if f, ok := s.Stdin.(*os.File); ok && isTerminal(f) {
		if err := s.readlineLoop(); err == nil {
			return 0
		}
	}
	r := bufio.NewReader(s.Stdin)
	for !s.quit {
		s.printf("%s", s.prompt())
		line, err := r.ReadString('\n')
		if line == "" && err != nil {
			s.printf("\n")
			break
		}
		line = strings.TrimSuffix(line, "\n")
		s.printf("%s\n", line)
		s.RunLine(line)
		if s.quit {
			s.printf("\n") // as virsh does when quit ends the session
			break
		}
		if err == io.EOF {
			s.printf("%s\n", s.prompt())
			break
		}
	}
	return 0
}
