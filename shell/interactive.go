package shell

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/chzyer/readline"
)

// HistoryFile returns the interactive history file:
// $XDG_CACHE_HOME/vsh/history, else ~/.cache/vsh/history.
func HistoryFile() string {
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "vsh", "history")
}

func (s *Shell) readlineLoop() error {
	hist := HistoryFile()
	if hist != "" {
		if err := os.MkdirAll(filepath.Dir(hist), 0o700); err != nil {
			hist = ""
		}
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          s.prompt(),
		HistoryFile:     hist,
		HistoryLimit:    historySize(),
		AutoComplete:    completer{s},
		InterruptPrompt: "^C",
		Stdin:           io.NopCloser(s.Stdin),
		Stdout:          s.Stdout,
		Stderr:          s.Stderr,
	})
	if err != nil {
		return err
	}
	defer rl.Close()
	for !s.quit {
		line, err := rl.Readline()
		if err == readline.ErrInterrupt {
			continue
		}
		if err != nil { // io.EOF: Ctrl-D
			s.printf("\n")
			break
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		s.RunLine(line)
		if s.quit {
			s.printf("\n")
		}
		rl.SetPrompt(s.prompt())
	}
	return nil
}

// historySize returns $VSH_HISTSIZE (like VIRSH_HISTSIZE: default 500,
// at most 500000).
func historySize() int {
	n, err := strconv.Atoi(os.Getenv("VSH_HISTSIZE"))
	if err != nil || n < 0 {
		return 500
	}
	return min(n, 500000)
}

func init() { handlers["complete"] = cmdComplete }

// cmdComplete is virsh's hidden complete command, for shell completion
// scripts: it prints the candidates for the words given, the last one
// being the word to complete.
func cmdComplete(s *Shell, c *Call) error {
	line := strings.Join(c.Argv("string"), " ")
	if args := c.Argv("string"); len(args) == 0 || args[len(args)-1] == "" {
		line += " "
	}
	if s.conn == nil {
		s.Connect()
	}
	_, cands := s.Complete(strings.TrimLeft(line, " "))
	for _, cand := range cands {
		s.printf("%s\n", cand)
	}
	return nil
}

// completer adapts Shell.Complete to readline.
type completer struct{ s *Shell }

// Do returns the suffixes that complete the word before pos.
func (c completer) Do(line []rune, pos int) ([][]rune, int) {
	word, cands := c.s.Complete(string(line[:pos]))
	out := make([][]rune, 0, len(cands))
	for _, cand := range cands {
		out = append(out, []rune(cand[len(word):]+" "))
	}
	return out, len([]rune(word))
}

// Complete returns the word being completed at the end of line and the
// candidates that extend it: command names, option names, and option
// values (domain, network, pool and volume names from the connection,
// shutdown modes, pool types, file names).
func (s *Shell) Complete(line string) (string, []string) {
	if i := strings.LastIndexAny(line, ";\n"); i >= 0 {
		line = line[i+1:]
	}
	words := strings.Fields(line)
	word := ""
	if len(words) > 0 && !strings.HasSuffix(line, " ") && !strings.HasSuffix(line, "\t") {
		word = words[len(words)-1]
		words = words[:len(words)-1]
	}
	if len(words) == 0 {
		return word, withPrefix(s.commandNames(), word)
	}
	cmd, ok := s.table[words[0]]
	if !ok {
		return word, nil
	}
	// Replay the words to see which options are taken and whether the
	// word is an option's value.
	seen := map[string]bool{}
	var pending *Option
	var positional []string
	for _, w := range words[1:] {
		if pending != nil {
			pending = nil
			continue
		}
		if isOptionWord(w) {
			name, _, eq := strings.Cut(w[2:], "=")
			if o := cmd.option(name); o != nil {
				seen[name] = true
				if o.Kind != KindBool && !eq {
					pending = o
				}
			}
			continue
		}
		positional = append(positional, w)
	}
	// Positional words fill the options not given by name, in order.
	for range positional {
		for i := range cmd.Options {
			o := &cmd.Options[i]
			if o.Kind != KindBool && o.Kind != KindArgv && !seen[o.Name] {
				seen[o.Name] = true
				break
			}
		}
	}
	if pending == nil && strings.HasPrefix(word, "--") {
		if name, val, eq := strings.Cut(word[2:], "="); eq {
			if o := cmd.option(name); o != nil {
				var out []string
				for _, v := range withPrefix(s.optionValues(cmd, o, words), val) {
					out = append(out, "--"+name+"="+v)
				}
				return word, out
			}
		}
	}
	if pending != nil {
		return word, withPrefix(s.optionValues(cmd, pending, words), word)
	}
	if strings.HasPrefix(word, "-") {
		var names []string
		for _, o := range cmd.Options {
			if !seen[o.Name] || o.Kind == KindArgv {
				names = append(names, "--"+o.Name)
			}
		}
		return word, withPrefix(names, word)
	}
	// The next positional option not given by name.
	for i := range cmd.Options {
		o := &cmd.Options[i]
		if o.Kind == KindBool || seen[o.Name] {
			continue
		}
		if vals := s.optionValues(cmd, o, words); vals != nil {
			return word, withPrefix(vals, word)
		}
		break
	}
	var names []string
	for _, o := range cmd.Options {
		if !seen[o.Name] {
			names = append(names, "--"+o.Name)
		}
	}
	return word, withPrefix(names, word)
}

func withPrefix(list []string, prefix string) []string {
	var out []string
	for _, l := range list {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// optionValues lists the values an option can take, or nil.
func (s *Shell) optionValues(cmd *Command, o *Option, words []string) []string {
	var out []string
	switch o.Name {
	case "domain":
		if s.conn != nil {
			if doms, err := s.conn.ListDomains(); err == nil {
				for _, d := range doms {
					out = append(out, d.Name)
				}
			}
		}
	case "network":
		if s.conn != nil {
			if nets, err := s.conn.ListNetworks(); err == nil {
				for _, n := range nets {
					out = append(out, n.Name)
				}
			}
		}
	case "pool":
		if s.conn != nil {
			if pools, err := s.conn.ListPools(); err == nil {
				for _, p := range pools {
					out = append(out, p.Name)
				}
			}
		}
	case "vol":
		if s.conn != nil {
			pool := ""
			for i, w := range words {
				if w == "--pool" && i+1 < len(words) {
					pool = words[i+1]
				} else if strings.HasPrefix(w, "--pool=") {
					pool = w[len("--pool="):]
				}
			}
			if pools, err := s.conn.ListPools(); err == nil {
				for _, p := range pools {
					if pool != "" && p.Name != pool {
						continue
					}
					vols, _ := s.conn.ListVolumes(p.Name)
					for _, v := range vols {
						if pool != "" {
							out = append(out, v.Name)
						} else {
							out = append(out, v.Path)
						}
					}
				}
			}
		}
	case "mode":
		out = append(out, shutdownModes...)
	case "type":
		if strings.HasPrefix(cmd.Name, "pool-") {
			out = append(out, poolTypes...)
		}
	case "format":
		out = []string{"raw", "qcow2"}
	case "command":
		out = s.commandNames()
		for _, g := range groups {
			out = append(out, g.Keyword)
		}
	case "file", "dir":
		out = []string{}
	}
	return out
}
