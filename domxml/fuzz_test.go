package domxml

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"vsh/schema"
)

// addSeeds adds the example and test documents to a fuzz corpus.
func addSeeds(f *testing.F) {
	for _, g := range []string{"../examples/domains/*.xml", "testdata/*.xml"} {
		files, _ := filepath.Glob(g)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte(editBase))
	f.Add([]byte(genDomain(0xfff)))
	f.Add([]byte(genNetwork(3)))
	f.Add([]byte("<domain><devices><interface type='bridge'/></devices></domain>"))
	f.Add([]byte("<domain type=\"kvm\">\r\n <name>a</name> <!-- c -->\r\n <memory\r\n   unit='KiB'>1</memory>\r\n <devices>\r\n  <interface\r\n    type='network'><source network='d'/></interface>\r\n </devices>\r\n</domain>\r\n"))
	f.Add([]byte("<network>\n\t<name>n</name>\n\t<bridge\n\t\tstp='on'/>\n</network>"))
}

// faithful checks that XML() means exactly the edited tree: parsing it and
// rendering it again gives what etree renders for the tree itself.
func faithful(t *testing.T, s *source, out []byte) {
	t.Helper()
	doc, err := schema.Parse("faithful.xml", out)
	if err != nil {
		t.Fatalf("XML() does not parse: %v\n%s", err, out)
	}
	again := source{doc: doc, singleQuote: s.singleQuote}
	if got, want := again.render(), s.render(); !bytes.Equal(got, want) {
		t.Fatalf("XML() differs from the edited tree:\n%s\nwant (as etree renders it)\n%s", got, want)
	}
}

// reparse checks that XML() of a parsed document parses again, before and
// after FillDefaults.
func reparse[T xmler](t *testing.T, kind string, o T, parse func(string, []byte, bool) (T, error), fill func(T) (bool, error)) {
	t.Helper()
	if _, err := parse("again.xml", o.XML(), false); err != nil {
		t.Fatalf("XML() of a parsed %s does not parse: %v\n%s", kind, err, o.XML())
	}
	if fill == nil {
		return
	}
	if _, err := fill(o); err != nil {
		return
	}
	if _, err := parse("filled.xml", o.XML(), false); err != nil {
		t.Fatalf("XML() of a filled %s does not parse: %v\n%s", kind, err, o.XML())
	}
}

func FuzzParseDomain(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDomain("fuzz.xml", data, false)
		if err != nil {
			return
		}
		d.ToConfig()
		reparse(t, "domain", d, ParseDomain, (*Domain).FillDefaults)
		c := d.Clone()
		c.SetName("n")
		c.SetVCPUs(2, 1)
		c.SetMemoryKiB(1024)
		c.AddInterface(Interface{Type: "network", SourceNetwork: "default"})
		faithful(t, &c.src, c.XML())
	})
}

func FuzzParseNetwork(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNetwork("fuzz.xml", data, false)
		if err != nil {
			return
		}
		n.Subnet()
		reparse(t, "network", n, ParseNetwork, func(n *Network) (bool, error) { return n.FillDefaults(nil) })
		faithful(t, &n.src, n.XML())
	})
}

func FuzzParsePool(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePool("fuzz.xml", data, false)
		if err != nil {
			return
		}
		reparse(t, "pool", p, ParsePool, func(p *Pool) (bool, error) {
			p.SetSizes(3, 2, 1)
			return p.FillDefaults()
		})
		faithful(t, &p.src, p.XML())
	})
}

func FuzzParseVolume(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVolume("fuzz.xml", data, false)
		if err != nil {
			return
		}
		reparse(t, "volume", v, ParseVolume, func(v *Volume) (bool, error) {
			v.SetPath("/p")
			v.SetSizes(2, 1)
			return true, nil
		})
		faithful(t, &v.src, v.XML())
	})
}
