package shell

import (
	"reflect"
	"strings"
	"testing"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want [][]string
		err  string
	}{
		{in: "", want: nil},
		{in: "list --all", want: [][]string{{"list", "--all"}}},
		{in: "  list\t--all  ", want: [][]string{{"list", "--all"}}},
		{in: "echo 'a b' \"c d\" e\\ f", want: [][]string{{"echo", "a b", "c d", "e f"}}},
		{in: "a;b", want: [][]string{{"a"}, {"b"}}},
		{in: "a;;b", want: [][]string{{"a"}, {"b"}}},
		{in: "a\nb", want: [][]string{{"a"}, {"b"}}},
		{in: "echo hi # comment; still comment\necho x", want: [][]string{{"echo", "hi"}, {"echo", "x"}}},
		{in: "echo a#b #c", want: [][]string{{"echo", "a#b"}}},
		{in: "echo a\\;b", want: [][]string{{"echo", "a;b"}}},
		{in: "echo 'a\\b'", want: [][]string{{"echo", "a\\b"}}},
		{in: "echo \"a\\\"b\"", want: [][]string{{"echo", "a\"b"}}},
		{in: "echo \"a;b\"", want: [][]string{{"echo", "a;b"}}},
		{in: "echo a\\\nb", want: [][]string{{"echo", "ab"}}},
		{in: "echo a \\\nb", want: [][]string{{"echo", "a", "b"}}},
		{in: "echo 'a", want: [][]string{{"echo", "a"}}},
		{in: "echo ''", want: [][]string{{"echo", ""}}},
		{in: "echo a\"b c\"d", want: [][]string{{"echo", "ab cd"}}},
		{in: "echo a \"b", err: "missing \""},
		{in: "echo a\\", err: "dangling \\"},
	}
	for _, tt := range tests {
		got, err := Tokenize(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Tokenize(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Tokenize(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	table := commandTable()
	tests := []struct {
		in   string
		want map[string][]string
		help bool
		err  string
	}{
		{in: "dominfo test", want: map[string][]string{"domain": {"test"}}},
		{in: "dominfo --domain test", want: map[string][]string{"domain": {"test"}}},
		{in: "dominfo --domain=test", want: map[string][]string{"domain": {"test"}}},
		{in: "dominfo -- test", want: map[string][]string{"domain": {"test"}}},
		{in: "dominfo -x", want: map[string][]string{"domain": {"-x"}}},
		{in: "dominfo -- --x", want: map[string][]string{"domain": {"--x"}}},
		{in: "list --all --name", want: map[string][]string{"all": nil, "name": nil}},
		{in: "shutdown test acpi", want: map[string][]string{"domain": {"test"}, "mode": {"acpi"}}},
		{in: "shutdown --mode acpi test", want: map[string][]string{"domain": {"test"}, "mode": {"acpi"}}},
		{in: "vol-create-as p v 1G --format qcow2", want: map[string][]string{"pool": {"p"}, "name": {"v"}, "capacity": {"1G"}, "format": {"qcow2"}}},
		{in: "echo a b c", want: map[string][]string{"string": {"a", "b", "c"}}},
		{in: "echo -- --all", want: map[string][]string{"string": {"--all"}}},
		{in: "desc test hello world", want: map[string][]string{"domain": {"test"}, "new-desc": {"hello", "world"}}},
		{in: "dominfo --domain=test --help", want: map[string][]string{"domain": {"test"}}, help: true},
		{in: "start --help", want: map[string][]string{}, help: true},
		{in: "domi", err: "unknown command: 'domi'"},
		{in: "start", err: "command 'start' requires <domain> option"},
		{in: "setvcpus test", err: "command 'setvcpus' requires --count option"},
		{in: "dominfo --bogus", err: "command 'dominfo' doesn't support option --bogus"},
		{in: "dominfo --domain", err: "expected syntax: --domain <string>"},
		{in: "dominfo test --domain test", err: "option --domain already seen"},
		{in: "dominfo test test", err: "unexpected data 'test'"},
		{in: "list --all extra", err: "unexpected data 'extra'"},
		{in: "list --all=x", err: "invalid '=' after option --all"},
		{in: "list --help x", err: "unexpected data 'x'"},
		{in: "echo --all", err: "command 'echo' doesn't support option --all"},
	}
	for _, tt := range tests {
		cmds, err := Tokenize(tt.in)
		if err != nil {
			t.Fatalf("Tokenize(%q): %v", tt.in, err)
		}
		call, err := Parse(table, cmds[0])
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Parse(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(call.Values, tt.want) || call.Help != tt.help {
			t.Errorf("Parse(%q) = %q help=%v, want %q help=%v", tt.in, call.Values, call.Help, tt.want, tt.help)
		}
	}
}

func TestTable(t *testing.T) {
	rows := [][]string{{"1", "test", "running"}, {"-", "vm1", "shut off"}}
	want := " Id   Name   State\n-----------------------\n 1    test   running\n -    vm1    shut off\n"
	if got := table([]string{"Id", "Name", "State"}, rows, false); got != want {
		t.Errorf("table =\n%q\nwant\n%q", got, want)
	}
	if got := table([]string{"Id", "Name", "State"}, rows[:1], true); got != " 1   test   running\n" {
		t.Errorf("quiet table = %q", got)
	}
	if got := table([]string{"Name", "Path"}, nil, false); got != " Name   Path\n--------------\n" {
		t.Errorf("empty table = %q", got)
	}
	// Titles may be empty: the last cell has no padding after it.
	if got := table([]string{"Id", "Name", "State", "Title"}, [][]string{{"1", "test", "running", ""}}, false); got != " Id   Name   State     Title\n------------------------------\n 1    test   running   \n" {
		t.Errorf("title table = %q", got)
	}
}

func TestPrettyCapacity(t *testing.T) {
	for in, want := range map[uint64]string{
		0: "0.00 B", 1023: "1023.00 B", 1024: "1.00 KiB", 2 << 30: "2.00 GiB",
		100 << 30: "100.00 GiB", 10737418240: "10.00 GiB", 1536: "1.50 KiB",
	} {
		if got := prettyCapacity(in); got != want {
			t.Errorf("prettyCapacity(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"x y": "'x y'", "z": "z", "a'b": `'a'\''b'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]bool{"^]": true, "^a": true, "x": true, "^": false, "xx": false, "^1": false, "": false} {
		if got := ValidEscape(in); got != want {
			t.Errorf("ValidEscape(%q) = %v, want %v", in, got, want)
		}
	}
	if b := escapeByte("^]"); b != 0x1d {
		t.Errorf("escapeByte(^]) = %#x", b)
	}
	if b := escapeByte("^a"); b != 0x01 {
		t.Errorf("escapeByte(^a) = %#x", b)
	}
}

// TestHelpTexts checks that every command has help and a handler, and
// that the help layout is virsh's.
func TestHelpTexts(t *testing.T) {
	s := New(Options{})
	for name, c := range s.table {
		if _, ok := handlers[name]; !ok {
			t.Errorf("command %s has no handler", name)
		}
		if c.Brief == "" {
			t.Errorf("command %s has no brief help", name)
		}
	}
	var out strings.Builder
	s.Stdout = &out
	s.printCommandHelp(s.table["domid"])
	want := "  NAME\n    domid - convert a domain name or UUID to domain id\n\n  SYNOPSIS\n    domid <domain> [--json]\n\n  OPTIONS\n    [--domain] <string>  domain name or uuid\n    --json           print the result as JSON (see vsh's JSON.md)\n\n"
	if out.String() != want {
		t.Errorf("help domid =\n%s\nwant\n%s", out.String(), want)
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"list --all", "echo 'a b' \"c\\\"d\" e\\ f; x # y\nz", "a\\\n", "\"", "'", "--x=y -- --z"} {
		f.Add(s)
	}
	table := commandTable()
	f.Fuzz(func(t *testing.T, line string) {
		cmds, err := Tokenize(line)
		if err != nil {
			return
		}
		for _, words := range cmds {
			if len(words) == 0 {
				t.Fatalf("empty command from %q", line)
			}
			call, err := Parse(table, words)
			if err == nil && call.Cmd == nil {
				t.Fatalf("Parse(%q) returned no command", words)
			}
		}
	})
}

func FuzzComplete(f *testing.F) {
	for _, s := range []string{"domst", "dominfo ", "list --st", "shutdown t --mode ", "dominfo --domain=", "a; b --", "vol-info --pool p "} {
		f.Add(s)
	}
	s := New(Options{})
	f.Fuzz(func(t *testing.T, line string) {
		word, cands := s.Complete(line)
		for _, c := range cands {
			if !strings.HasPrefix(c, word) {
				t.Fatalf("Complete(%q): candidate %q does not extend %q", line, c, word)
			}
		}
		completer{s}.Do([]rune(line), len([]rune(line)))
	})
}
