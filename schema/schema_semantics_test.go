package schema

import (
	"strings"
	"testing"
)

// TestSemanticsWithoutStructure checks that Semantics skips the schema
// pass (unknown elements pass) but still enforces libvirt's parser rules.
func TestSemanticsWithoutStructure(t *testing.T) {
	for _, tc := range []struct {
		name, xml, want string
	}{
		{"unknown element passes", `<domain type='kvm'><name>a</name><memory>1024</memory><bogus/><os><type>hvm</type></os></domain>`, ""},
		{"bad name", `<domain type='kvm'><name>a/b</name><memory>1024</memory><os><type>hvm</type></os></domain>`, "/"},
		{"current above count", `<domain type='kvm'><name>a</name><memory>1024</memory><vcpu current='4'>2</vcpu><os><type>hvm</type></os></domain>`, "current vCPU count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse("t.xml", []byte(tc.xml))
			if err != nil {
				t.Fatal(err)
			}
			errs := d.Semantics()
			if tc.want == "" {
				if len(errs) != 0 {
					t.Fatalf("Semantics() = %v, want none", errs)
				}
				if len(d.Validate()) == 0 {
					t.Fatal("Validate() accepted the unknown element")
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(errs.Error(), tc.want) {
				t.Fatalf("Semantics() = %v, want an error containing %q", errs, tc.want)
			}
		})
	}
}
