package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Result is one side (vsh or its peer) of a figure: the samples of several
// runs, or the reason there are none.
type Result struct {
	Samples []float64
	// Missing explains why there are no samples: an install hint or what
	// failed. It is printed in place of the value.
	Missing string
}

// measured reports whether r has samples.
func (r Result) measured() bool { return r.Missing == "" && len(r.Samples) > 0 }

// Summary is the median, minimum and maximum of a sample set.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// summarize returns the median, min and max of samples; ok is false for an
// empty set.
func summarize(samples []float64) (s Summary, ok bool) {
	if len(samples) == 0 {
		return Summary{}, false
	}
	v := append([]float64(nil), samples...)
	sort.Float64s(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{Median: med, Min: v[0], Max: v[n-1], N: n}, true
}

// Row is one line of the results table.
type Row struct {
	Figure      string // what is measured
	Unit        string // unit of the samples ("ms", "MiB", "MiB/s", ...)
	LowerBetter bool   // times and sizes: lower is better
	VSH         Result
	PeerName    string // the peer, e.g. "qemu-system-x86_64 -M microvm"
	Peer        Result
	Conditions  string // per-figure conditions
}

// ratio is the figure's "times better" number, >1 meaning vsh is better:
// peer/vsh for lower-is-better figures, vsh/peer otherwise.
func (r Row) ratio() (float64, bool) {
	if !r.VSH.measured() || !r.Peer.measured() {
		return 0, false
	}
	v, _ := summarize(r.VSH.Samples)
	p, _ := summarize(r.Peer.Samples)
	if v.Median == 0 || p.Median == 0 {
		return 0, false
	}
	if r.LowerBetter {
		return p.Median / v.Median, true
	}
	return v.Median / p.Median, true
}

// formatValue prints a number with about three significant digits.
func formatValue(x float64) string {
	ax := math.Abs(x)
	switch {
	case ax == 0:
		return "0"
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	case ax >= 0.01:
		return fmt.Sprintf("%.3f", x)
	}
	return fmt.Sprintf("%.2g", x)
}

// formatResult prints "median unit (min–max, n runs)" or the reason the
// result is missing.
func formatResult(r Result, unit string) string {
	if r.Missing != "" {
		return r.Missing
	}
	s, ok := summarize(r.Samples)
	if !ok {
		return "no samples"
	}
	if s.N == 1 {
		return fmt.Sprintf("%s %s (1 run)", formatValue(s.Median), unit)
	}
	return fmt.Sprintf("%s %s (%s–%s, n=%d)", formatValue(s.Median), unit, formatValue(s.Min), formatValue(s.Max), s.N)
}

// cell escapes a table cell for Markdown.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// notes collects conditions shared by several rows: a row's Conditions
// says "[n]" and the text is printed once under the table.
type notes struct{ texts []string }

// ref returns the marker of text, adding it on first use.
func (n *notes) ref(text string) string {
	for i, t := range n.texts {
		if t == text {
			return fmt.Sprintf("[%d]", i+1)
		}
	}
	n.texts = append(n.texts, text)
	return fmt.Sprintf("[%d]", len(n.texts))
}

// markdown renders the notes as a list.
func (n *notes) markdown() string {
	var b strings.Builder
	for i, t := range n.texts {
		fmt.Fprintf(&b, "- [%d] %s\n", i+1, t)
	}
	return b.String()
}

// markdownTable renders rows as a Markdown table.
func markdownTable(rows []Row) string {
	var b strings.Builder
	b.WriteString("| figure | vsh | peer | ratio | conditions |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := "—"
		if x, ok := r.ratio(); ok {
			ratio = fmt.Sprintf("%sx", formatValue(x))
		}
		peer := formatResult(r.Peer, r.Unit)
		if r.PeerName != "" {
			peer = r.PeerName + ": " + peer
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(r.Figure), cell(formatResult(r.VSH, r.Unit)), cell(peer), ratio, cell(r.Conditions))
	}
	return b.String()
}
