package shell

import (
	"fmt"
	"strings"
)

// syntaxError is a grammar error; virsh prints it as "error: <text>" and
// runs nothing of the line.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func syntaxErrorf(format string, args ...any) error {
	return &syntaxError{fmt.Sprintf(format, args...)}
}

// Tokenize splits a command string into commands and their words with
// virsh's rules (vshCommandStringGetArg in tools/vsh.c): blanks separate
// words, ';' and newline end a command, a word starting with '#' comments
// out the rest of the line, '…' is literal (an unterminated one is
// tolerated), "…" allows \ escapes, \ escapes any character and
// backslash-newline is elided. Empty commands are dropped.
func Tokenize(line string) ([][]string, error) {
	var cmds [][]string
	var cur []string
	p := 0
	n := len(line)
	for {
		for p < n && (line[p] == ' ' || line[p] == '\t' || (line[p] == '\\' && p+1 < n && line[p+1] == '\n')) {
			if line[p] == '\\' {
				p++
			}
			p++
		}
		if p >= n {
			break
		}
		if line[p] == ';' || line[p] == '\n' {
			p++
			if len(cur) > 0 {
				cmds = append(cmds, cur)
				cur = nil
			}
			continue
		}
		if line[p] == '#' {
			for p < n && line[p] != '\n' {
				p++
			}
			continue
		}
		var word strings.Builder
		single, double := false, false
		for p < n {
			c := line[p]
			if !single && !double && (c == ' ' || c == '\t' || c == ';' || c == '\n') {
				break
			}
			if !double && c == '\'' {
				single = !single
				p++
				continue
			}
			if !single && c == '\\' {
				p++
				if p >= n {
					return nil, syntaxErrorf("dangling \\")
				}
				if line[p] == '\n' {
					p++
					continue
				}
			} else if !single && c == '"' {
				double = !double
				p++
				continue
			}
			word.WriteByte(line[p])
			p++
		}
		if double {
			return nil, syntaxErrorf("missing \"")
		}
		cur = append(cur, word.String())
	}
	if len(cur) > 0 {
		cmds = append(cmds, cur)
	}
	return cmds, nil
}

// Call is one parsed command with its option values.
type Call struct {
	Cmd *Command
	// Values holds each given option's values (several only for argv).
	Values map[string][]string
	// Help is set when --help was given: the command prints its help
	// instead of running.
	Help bool
}

// Has reports whether option name was given.
func (c *Call) Has(name string) bool { _, ok := c.Values[name]; return ok }

// Str returns the value of option name, or "" when it was not given.
func (c *Call) Str(name string) string {
	if v := c.Values[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Argv returns all values of an argv option.
func (c *Call) Argv(name string) []string { return c.Values[name] }

// isOptionWord reports whether a word names an option: "--" followed by
// an alphanumeric character, as virsh checks.
func isOptionWord(w string) bool {
	if len(w) < 3 || w[0] != '-' || w[1] != '-' {
		return false
	}
	c := w[2]
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Parse matches the words of one command against the command table with
// virsh's option rules: --opt value, --opt=value, positional values fill
// the non-bool options in order, "--" ends option parsing, no
// abbreviations, each option at most once, required options checked.
func Parse(table map[string]*Command, words []string) (*Call, error) {
	if len(words) == 0 {
		return nil, syntaxErrorf("missing command")
	}
	cmd, ok := table[words[0]]
	if !ok {
		return nil, syntaxErrorf("unknown command: '%s'", words[0])
	}
	call := &Call{Cmd: cmd, Values: map[string][]string{}}
	// Options that positional values may fill, in order.
	var positional []*Option
	for i := range cmd.Options {
		if cmd.Options[i].Kind != KindBool {
			positional = append(positional, &cmd.Options[i])
		}
	}
	dataOnly := false
	for i := 1; i < len(words); i++ {
		w := words[i]
		if !dataOnly && isOptionWord(w) {
			name, value, hasValue := strings.Cut(w[2:], "=")
			opt := cmd.option(name)
			if opt == nil {
				if name == "help" && !hasValue {
					call.Help = true
					continue
				}
				return nil, syntaxErrorf("command '%s' doesn't support option --%s", cmd.Name, name)
			}
			if _, seen := call.Values[name]; seen && opt.Kind != KindArgv {
				return nil, syntaxErrorf("option --%s already seen", name)
			}
			if opt.Kind == KindBool {
				if hasValue {
					return nil, syntaxErrorf("invalid '=' after option --%s", name)
				}
				call.Values[name] = nil
				continue
			}
			if !hasValue {
				if i+1 >= len(words) {
					typ := "string"
					if opt.Kind == KindInt {
						typ = "number"
					}
					return nil, syntaxErrorf("expected syntax: --%s <%s>", name, typ)
				}
				i++
				value = words[i]
			}
			call.Values[name] = append(call.Values[name], value)
			positional = without(positional, opt)
			continue
		}
		if !dataOnly && w == "--" {
			dataOnly = true
			continue
		}
		if len(positional) == 0 {
			return nil, syntaxErrorf("unexpected data '%s'", w)
		}
		opt := positional[0]
		call.Values[opt.Name] = append(call.Values[opt.Name], w)
		if opt.Kind != KindArgv {
			positional = positional[1:]
		}
	}
	if call.Help {
		return call, nil
	}
	for _, opt := range cmd.Options {
		if !opt.Required {
			continue
		}
		if _, ok := call.Values[opt.Name]; ok {
			continue
		}
		if opt.Kind == KindData || opt.Kind == KindArgv {
			return nil, syntaxErrorf("command '%s' requires <%s> option", cmd.Name, opt.Name)
		}
		return nil, syntaxErrorf("command '%s' requires --%s option", cmd.Name, opt.Name)
	}
	return call, nil
}

func without(opts []*Option, o *Option) []*Option {
	for i, x := range opts {
		if x == o {
			return append(opts[:i:i], opts[i+1:]...)
		}
	}
	return opts
}
