package shell

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// table renders rows in virsh's vshTable layout: every cell is printed as
// " " + cell, cells but the last are padded to the column width plus two
// spaces (so no trailing blanks), and the header is followed by a dash
// rule of sum(width+3) characters. With quiet the header and rule are
// left out and do not count for the widths.
func table(header []string, rows [][]string, quiet bool) string {
	all := rows
	if !quiet {
		all = append([][]string{header}, rows...)
	}
	widths := make([]int, len(header))
	for _, r := range all {
		for i, c := range r {
			if w := utf8.RuneCountInString(c); i < len(widths) && w > widths[i] {
				widths[i] = w
			}
		}
	}
	var b strings.Builder
	line := func(r []string) {
		for i, c := range r {
			b.WriteString(" ")
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteString("\n")
	}
	if !quiet {
		line(header)
		rule := 0
		for _, w := range widths {
			rule += w + 3
		}
		b.WriteString(strings.Repeat("-", rule))
		b.WriteString("\n")
	}
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// kv renders "label: value" lines as virsh's dominfo does
// (printf("%-15s %s\n")); width is the label column width.
func kv(width int, pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(&b, "%-*s %s\n", width, pairs[i]+":", pairs[i+1])
	}
	return b.String()
}

// prettyCapacity prints a byte count as virsh's vshPrettyCapacity does:
// two decimals and a binary unit.
func prettyCapacity(v uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(v)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}

// printValue prints one value on a line, or {"key": value} with --json.
func (s *Shell) printValue(c *Call, key, value string) error {
	if c.Has("json") {
		return s.printJSON(map[string]string{key: value})
	}
	s.printf("%s\n", value)
	return nil
}

// printJSON writes v as indented JSON followed by a newline.
func (s *Shell) printJSON(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fail(err, "failed to encode JSON")
	}
	s.printf("%s\n", data)
	return nil
}
