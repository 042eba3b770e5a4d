package schema

import (
	"os"
	"strings"
	"testing"
)

func addExampleSeeds(f *testing.F) {
	for _, path := range exampleFiles(f) {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(strings.Replace(minimalDomain, "%s", "<vcpu current='1'>2</vcpu>", 1)))
	f.Add([]byte("<domain type='kvm'><name>b3</name><memory>1</memory>\n"))
	f.Add([]byte("<network><name>n</name><ip address='10.0.0.1' prefix='8'><dhcp><range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>"))
}

// FuzzParse: any input parses or fails with positioned errors, never panics,
// and every parsed element has a position inside the input.
func FuzzParse(f *testing.F) {
	addExampleSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse("f.xml", data)
		if err != nil {
			if l, ok := err.(ErrorList); !ok || len(l) == 0 {
				t.Fatalf("Parse error is %T %v, want a non-empty ErrorList", err, err)
			}
			return
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range d.Doc.Root().FindElements("//*") {
			p := d.Pos(e)
			if p.Line < 1 || p.Line > lines || p.Col < 1 {
				t.Fatalf("element <%s> has position %v outside the input", e.Tag, p)
			}
		}
	})
}

// FuzzValidate: validation of any parseable input never panics and reports
// errors in position order.
func FuzzValidate(f *testing.F) {
	addExampleSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		errs := Validate("f.xml", data)
		for i := 1; i < len(errs); i++ {
			if errs[i].Pos.before(errs[i-1].Pos) {
				t.Fatalf("errors out of order: %v before %v", errs[i-1], errs[i])
			}
		}
	})
}

// FuzzParseScaled: never panics; a success never exceeds the limit and
// agrees with the unscaled value for byte units.
func FuzzParseScaled(f *testing.F) {
	for _, s := range [][3]string{{"1", "KiB", "bytes"}, {"2", "G", "KiB"}, {"18446744073709551615", "b", ""}, {"1.5", "MB", ""}, {"7", "eib", ""}, {"-1", "", "k"}} {
		f.Add(s[0], s[1], s[2], uint64(0))
	}
	f.Fuzz(func(t *testing.T, value, unit, def string, limit uint64) {
		n, err := ParseScaled(value, unit, def, limit)
		if err != nil {
			return
		}
		if limit != 0 && n > limit {
			t.Fatalf("ParseScaled(%q, %q) = %d above limit %d", value, unit, n, limit)
		}
		u := unit
		if u == "" {
			u = def
		}
		if s, _ := unitScale(u); s == 1 {
			if v, err := parseUint(value); err != nil || v != n {
				t.Fatalf("ParseScaled(%q, %q) = %d, want %d", value, unit, n, v)
			}
		}
	})
}
