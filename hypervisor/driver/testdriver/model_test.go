package testdriver

import (
	"strings"
	"testing"
)

func TestNormUUID(t *testing.T) {
	for in, want := range map[string]string{
		"6695eb01-f6a4-8304-79aa-97f2502e193f": "6695eb01-f6a4-8304-79aa-97f2502e193f",
		"6695EB01F6A4830479AA97F2502E193F":     "6695eb01-f6a4-8304-79aa-97f2502e193f",
		"6695eb01-f6a4-8304-79aa-97f2502e193":  "",
		"test":                                 "",
		"1":                                    "",
	} {
		if got := normUUID(in); got != want {
			t.Errorf("normUUID(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzNormUUID checks that normUUID yields "" or a canonical UUID that
// normalizes to itself.
func FuzzNormUUID(f *testing.F) {
	f.Add("6695eb01-f6a4-8304-79aa-97f2502e193f")
	f.Add("6695EB01F6A4830479AA97F2502E193F")
	f.Add("--")
	f.Fuzz(func(t *testing.T, s string) {
		u := normUUID(s)
		if u == "" {
			return
		}
		if len(u) != 36 || normUUID(u) != u || strings.ToLower(u) != u {
			t.Fatalf("normUUID(%q) = %q", s, u)
		}
	})
}

// FuzzWithID checks that adding the id attribute never loses or reorders
// the document's bytes.
func FuzzWithID(f *testing.F) {
	f.Add("<domain type='test'>\n  <name>x</name>\n</domain>\n")
	f.Add("<domain/>")
	f.Add("<domain id='3'>")
	f.Add("<?xml version='1.0'?><!-- c --><domain type=\"kvm\">")
	f.Fuzz(func(t *testing.T, s string) {
		out := string(withID([]byte(s), 7))
		if out == s {
			return
		}
		removed := strings.Replace(out, " id='7'", "", 1)
		if removed != s {
			t.Fatalf("withID(%q) = %q", s, out)
		}
	})
}
