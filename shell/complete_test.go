package shell

import (
	"io"
	"reflect"
	"testing"

	_ "vsh/hypervisor/driver/testdriver"
)

func TestComplete(t *testing.T) {
	s := New(Options{URI: "test:///default"})
	s.Stdout, s.Stderr = io.Discard, io.Discard
	if err := s.Connect(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		line, word string
		want       []string
	}{
		{"domst", "domst", []string{"domstate"}},
		{"list; domi", "domi", []string{"domid", "domif-getlink", "domif-setlink", "domifaddr", "domiflist", "domifstat", "dominfo"}},
		{"dominfo ", "", []string{"test"}},
		{"dominfo --domain ", "", []string{"test"}},
		{"dominfo --domain=t", "--domain=t", []string{"--domain=test"}},
		{"dominfo test ", "", []string{"--json"}},
		{"list --st", "--st", []string{"--state-other", "--state-paused", "--state-running", "--state-shutoff"}},
		{"list --all --a", "--a", []string{"--autostart"}},
		{"shutdown test --mode ", "", []string{"acpi", "agent", "initctl", "paravirt", "signal"}},
		{"net-info ", "", []string{"default"}},
		{"pool-info d", "d", []string{"default-pool"}},
		{"vol-list ", "", []string{"default-pool"}},
		{"help net-li", "net-li", []string{"net-list"}},
		{"nosuch ", "", nil},
	}
	for _, tt := range tests {
		word, got := s.Complete(tt.line)
		if word != tt.word || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Complete(%q) = %q, %q; want %q, %q", tt.line, word, got, tt.word, tt.want)
		}
	}
	// The readline adapter returns the missing suffixes.
	got, n := completer{s}.Do([]rune("domst"), 5)
	if n != 5 || len(got) != 1 || string(got[0]) != "ate " {
		t.Errorf("Do(domst) = %q, %d", got, n)
	}
}
