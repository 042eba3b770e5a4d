package main

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		in   []float64
		want Summary
	}{
		{[]float64{3}, Summary{3, 3, 3, 1}},
		{[]float64{5, 1, 3}, Summary{3, 1, 5, 3}},
		{[]float64{4, 1, 3, 2}, Summary{2.5, 1, 4, 4}},
	}
	for _, tt := range tests {
		got, ok := summarize(tt.in)
		if !ok || got != tt.want {
			t.Errorf("summarize(%v) = %+v, %v; want %+v", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := summarize(nil); ok {
		t.Error("summarize(nil) reported samples")
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		want float64
		ok   bool
	}{
		{"time: vsh twice as fast", Row{LowerBetter: true, VSH: Result{Samples: []float64{1, 2, 3}}, Peer: Result{Samples: []float64{4}}}, 2, true},
		{"throughput: vsh half", Row{VSH: Result{Samples: []float64{50}}, Peer: Result{Samples: []float64{100}}}, 0.5, true},
		{"peer missing", Row{VSH: Result{Samples: []float64{1}}, Peer: Result{Missing: "apt-get install qemu-utils"}}, 0, false},
		{"vsh zero", Row{LowerBetter: true, VSH: Result{Samples: []float64{0}}, Peer: Result{Samples: []float64{1}}}, 0, false},
	}
	for _, tt := range tests {
		got, ok := tt.row.ratio()
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: ratio = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	rows := []Row{{
		Figure: "a|b", Unit: "ms", LowerBetter: true,
		VSH:      Result{Samples: []float64{10, 12, 11}},
		PeerName: "qemu",
		Peer:     Result{Samples: []float64{33}},
	}, {
		Figure: "c", Unit: "ms",
		VSH:  Result{Samples: []float64{1}},
		Peer: Result{Missing: "not installed: apt-get install qemu-utils"},
	}}
	got := markdownTable(rows)
	for _, want := range []string{
		"| figure | vsh | peer | ratio | conditions |",
		`| a\|b | 11.0 ms (10.0–12.0, n=3) | qemu: 33.0 ms (1 run) | 3.00x |`,
		"| c | 1.00 ms (1 run) | not installed: apt-get install qemu-utils | — |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 0.5: "0.500", 3.14159: "3.14", 42.42: "42.4", 1234.5: "1234", 0.0012: "0.0012"} {
		if got := formatValue(in); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", in, got, want)
		}
	}
}
