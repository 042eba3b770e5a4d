package schema

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// dumpTree renders every token of a document with the flags domxml relies
// on (whitespace, CDATA), so two trees can be compared exactly.
func dumpTree(doc *etree.Document) string {
	var b strings.Builder
	var walk func(e *etree.Element, depth int)
	walk = func(e *etree.Element, depth int) {
		ind := strings.Repeat(" ", depth)
		for _, t := range e.Child {
			switch t := t.(type) {
			case *etree.Element:
				fmt.Fprintf(&b, "%sE %q %q\n", ind, t.Space, t.Tag)
				for _, a := range t.Attr {
					fmt.Fprintf(&b, "%s @%q %q = %q\n", ind, a.Space, a.Key, a.Value)
				}
				walk(t, depth+1)
			case *etree.CharData:
				fmt.Fprintf(&b, "%sT %q ws=%v cdata=%v\n", ind, t.Data, t.IsWhitespace(), t.IsCData())
			case *etree.Comment:
				fmt.Fprintf(&b, "%sC %q\n", ind, t.Data)
			case *etree.ProcInst:
				fmt.Fprintf(&b, "%sP %q %q\n", ind, t.Target, t.Inst)
			case *etree.Directive:
				fmt.Fprintf(&b, "%sD %q\n", ind, t.Data)
			}
		}
	}
	walk(&doc.Element, 0)
	return b.String()
}

// checkFastParse compares fastParse with etree's reader and with the
// decoder-based position scan on data.
func checkFastParse(t *testing.T, data []byte) {
	doc, spans, ok := fastParse(data)
	if !ok {
		return
	}
	ref := etree.NewDocument()
	ref.ReadSettings.PreserveCData = true
	ref.ReadSettings.PreserveDuplicateAttrs = true
	if err := ref.ReadFromBytes(data); err != nil {
		t.Fatalf("fastParse accepted what etree rejects (%v):\n%q", err, data)
	}
	d := &Document{File: "f.xml", src: data, lines: lineStarts(data)}
	refSpans, err := d.scan()
	if err != nil {
		t.Fatalf("fastParse accepted what encoding/xml rejects (%v):\n%q", err, data)
	}
	if got, want := dumpTree(doc), dumpTree(ref); got != want {
		t.Fatalf("trees differ for %q\nfast:\n%s\netree:\n%s", data, got, want)
	}
	if len(spans) != len(refSpans) {
		t.Fatalf("fastParse found %d elements, the decoder %d", len(spans), len(refSpans))
	}
	for i := range spans {
		if spans[i].start != refSpans[i].start {
			t.Fatalf("element %d starts at %d, the decoder says %d", i, spans[i].start, refSpans[i].start)
		}
	}
}

func TestFastParseMatchesEtree(t *testing.T) {
	inputs := []string{
		"<?xml version='1.0' encoding='UTF-8'?>\n<!-- c -->\n<domain type='kvm'>\n  <name>a &amp; b &lt;c&gt;</name><x a=\"&quot;'\" b='&apos;'/>\n<![CDATA[ <raw> ]]>\t\n</domain>\n",
		"<a xmlns:q='urn:q'><q:b q:c='1'>t</q:b ></a >",
		"<a><?pi   body ?></a>",
	}
	for _, path := range exampleFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := fastParse(data); !ok {
			t.Errorf("fastParse does not take the fast path for %s", path)
		}
		inputs = append(inputs, string(data))
	}
	for _, in := range inputs {
		checkFastParse(t, []byte(in))
	}
	// Inputs it must leave to the slow path.
	for _, in := range []string{"<!DOCTYPE a><a/>", "<a>&#65;</a>", "<a>&nbsp;</a>", "<a b='1' b='2'/>", "<a><!-- x -- y --></a>", "<a/><b/>", "<a>", "<a></b>", "<a b=1/>", "x<a/>", "<?xml version='1.0' encoding='latin1'?><a/>", "<a>\x01</a>"} {
		if _, _, ok := fastParse([]byte(in)); ok {
			t.Errorf("fastParse took the fast path for %q", in)
		}
	}
}

// FuzzFastParse: whenever the fast parser accepts an input, it builds the
// same tree as etree and finds the same start tags as encoding/xml.
func FuzzFastParse(f *testing.F) {
	addExampleSeeds(f)
	f.Add([]byte("<a x='&amp;'><![CDATA[x]]><!--c--><?p i?></a>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastParse(t, data)
	})
}
