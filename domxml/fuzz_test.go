package domxml

import (
	"os"
	"path/filepath"
	"testing"
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
		if _, err := ParseDomain("edited.xml", c.XML(), false); err != nil {
			t.Fatalf("XML() of an edited domain does not parse: %v\n%s", err, c.XML())
		}
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
	})
}
