package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/testdriver"
)

// The behaviour both drivers share (definitions, lookups, name and UUID
// rules, config edits, networks and pools as definitions) is one table of
// steps run against each driver through driver.Conn.

const confVM = `<domain type='kvm'>
  <name>conf1</name>
  <uuid>454f2712-406f-4352-9ba9-fcb18b18dc16</uuid>
  <title>My first VM</title>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static' current='1'>4</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
</domain>
`

// step is one call and the error text it must produce ("" for success).
type step struct {
	name string
	do   func(c driver.Conn, env *confEnv) error
	want string
}

// confEnv carries per-driver facts into the steps.
type confEnv struct {
	poolDir string
}

func define(xml string) func(driver.Conn, *confEnv) error {
	return func(c driver.Conn, _ *confEnv) error {
		_, err := c.DefineDomain([]byte(xml), "conf.xml", false)
		return err
	}
}

// expect checks a domain's info with a predicate.
func expect(ref string, ok func(driver.DomainInfo) bool) func(driver.Conn, *confEnv) error {
	return func(c driver.Conn, _ *confEnv) error {
		d, err := c.LookupDomain(ref)
		if err != nil {
			return err
		}
		if !ok(d) {
			return fmt.Errorf("unexpected info %+v", d)
		}
		return nil
	}
}

var conformance = []step{
	{"define", define(confVM), ""},
	{"redefine same", define(confVM), ""},
	{"other uuid same name", define(strings.Replace(confVM, "454f2712", "c1fd9615", 1)),
		"operation failed: domain 'conf1' already exists with uuid 454f2712-406f-4352-9ba9-fcb18b18dc16"},
	{"same uuid other name", define(strings.Replace(confVM, "<name>conf1<", "<name>conf2<", 1)),
		"operation failed: domain 'conf1' is already defined with uuid 454f2712-406f-4352-9ba9-fcb18b18dc16"},
	{"lookup by uuid", expect("454f2712-406f-4352-9ba9-fcb18b18dc16", func(d driver.DomainInfo) bool {
		return d.Name == "conf1" && d.ID == -1 && d.State == driver.StateShutoff && d.Persistent && d.Title == "My first VM" &&
			d.VCPUs == 1 && d.MaxMemKiB == 1048576 && d.MemoryKiB == 524288
	}), ""},
	{"lookup missing", func(c driver.Conn, _ *confEnv) error { _, err := c.LookupDomain("nope"); return err },
		"Domain not found: no domain with matching name 'nope'"},
	{"destroy inactive", func(c driver.Conn, _ *confEnv) error { return c.DestroyDomain("conf1", false) },
		"Requested operation is not valid: domain is not running"},
	{"setmem live on inactive", func(c driver.Conn, _ *confEnv) error {
		return c.SetMemory("conf1", 1000, driver.ModifyScope{Live: true})
	}, "Requested operation is not valid: domain is not running"},
	{"setmem above max", func(c driver.Conn, _ *confEnv) error { return c.SetMemory("conf1", 2<<20, driver.ModifyScope{}) },
		"invalid argument: cannot set memory higher than max memory"},
	{"setmem", func(c driver.Conn, _ *confEnv) error { return c.SetMemory("conf1", 262144, driver.ModifyScope{}) }, ""},
	{"setmaxmem", func(c driver.Conn, _ *confEnv) error {
		return c.SetMaxMemory("conf1", 2097152, driver.ModifyScope{Config: true})
	}, ""},
	{"setvcpus max", func(c driver.Conn, _ *confEnv) error {
		return c.SetVCPUs("conf1", 3, true, driver.ModifyScope{Config: true})
	}, ""},
	{"setvcpus over max", func(c driver.Conn, _ *confEnv) error { return c.SetVCPUs("conf1", 5, false, driver.ModifyScope{}) },
		"invalid argument: requested cpu amount exceeds maximum (5 > 3)"},
	{"setvcpus", func(c driver.Conn, _ *confEnv) error { return c.SetVCPUs("conf1", 2, false, driver.ModifyScope{}) }, ""},
	{"vcpucount", func(c driver.Conn, _ *confEnv) error {
		n, err := c.VCPUCount("conf1")
		if err == nil && n != (driver.VCPUCount{MaxConfig: 3, MaxLive: -1, CurrentConfig: 2, CurrentLive: -1}) {
			err = fmt.Errorf("vcpucount %+v", n)
		}
		return err
	}, ""},
	{"title", func(c driver.Conn, _ *confEnv) error {
		return c.SetDomainMetadata("conf1", true, "tt", driver.ModifyScope{})
	}, ""},
	{"title newline", func(c driver.Conn, _ *confEnv) error {
		return c.SetDomainMetadata("conf1", true, "a\nb", driver.ModifyScope{})
	}, "invalid argument: title can't contain newlines"},
	{"desc", func(c driver.Conn, _ *confEnv) error {
		return c.SetDomainMetadata("conf1", false, "hello", driver.ModifyScope{})
	}, ""},
	{"edits persisted", func(c driver.Conn, _ *confEnv) error {
		x, err := c.DomainXML("conf1", true)
		if err != nil {
			return err
		}
		for _, want := range []string{"<title>tt</title>", "<description>hello</description>", ">262144<", ">2097152<", "current='2'"} {
			if !strings.Contains(string(x), want) {
				return fmt.Errorf("XML lacks %s:\n%s", want, x)
			}
		}
		if s, err := c.DomainMetadata("conf1", false, driver.ModifyScope{}); s != "hello" || err != nil {
			return fmt.Errorf("description %q %v", s, err)
		}
		return nil
	}, ""},
	{"autostart", func(c driver.Conn, _ *confEnv) error { return c.SetDomainAutostart("conf1", true) }, ""},
	{"autostart set", expect("conf1", func(d driver.DomainInfo) bool { return d.Autostart && d.Title == "tt" }), ""},
	{"rename", func(c driver.Conn, _ *confEnv) error { return c.RenameDomain("conf1", "conf2") }, ""},
	{"old name gone", func(c driver.Conn, _ *confEnv) error { _, err := c.LookupDomain("conf1"); return err },
		"Domain not found: no domain with matching name 'conf1'"},
	{"renamed keeps uuid", expect("conf2", func(d driver.DomainInfo) bool {
		return d.UUID == "454f2712-406f-4352-9ba9-fcb18b18dc16" && d.Autostart
	}), ""},
	{"undefine", func(c driver.Conn, _ *confEnv) error { return c.UndefineDomain("conf2", driver.UndefineFlags{}) }, ""},
	{"undefined", func(c driver.Conn, _ *confEnv) error { _, err := c.LookupDomain("conf2"); return err },
		"Domain not found: no domain with matching name 'conf2'"},
	{"slash name", define(strings.Replace(confVM, "<name>conf1<", "<name>a/b<", 1)), "conf.xml:2:3: name a/b cannot contain '/'"},

	// Networks as definitions.
	{"net define", func(c driver.Conn, _ *confEnv) error {
		_, err := c.DefineNetwork([]byte(`<network><name>cnet</name><uuid>c7540bea-7b9f-4f0f-abfb-77a4b588b4d0</uuid><bridge name='vshbr7'/></network>`), "n.xml", false)
		return err
	}, ""},
	{"net dup", func(c driver.Conn, _ *confEnv) error {
		_, err := c.DefineNetwork([]byte(`<network><name>cnet</name><bridge name='vshbr8'/></network>`), "n.xml", false)
		return err
	}, "operation failed: network 'cnet' already exists with uuid c7540bea-7b9f-4f0f-abfb-77a4b588b4d0"},
	{"net lookup uuid", func(c driver.Conn, _ *confEnv) error {
		n, err := c.LookupNetwork("c7540bea-7b9f-4f0f-abfb-77a4b588b4d0")
		if err == nil && (n.Name != "cnet" || n.Active || !n.Persistent || n.Bridge != "vshbr7") {
			err = fmt.Errorf("network %+v", n)
		}
		return err
	}, ""},
	{"net autostart", func(c driver.Conn, _ *confEnv) error { return c.SetNetworkAutostart("cnet", true) }, ""},
	{"net undefine", func(c driver.Conn, _ *confEnv) error { return c.UndefineNetwork("cnet") }, ""},
	{"net gone", func(c driver.Conn, _ *confEnv) error { _, err := c.LookupNetwork("cnet"); return err },
		"Network not found: no network with matching name 'cnet'"},

	// Pools as definitions.
	{"pool define", func(c driver.Conn, env *confEnv) error {
		_, err := c.DefinePool([]byte(`<pool type='dir'><name>cpool</name><target><path>`+env.poolDir+`</path></target></pool>`), "p.xml", false)
		return err
	}, ""},
	{"pool refresh inactive", func(c driver.Conn, _ *confEnv) error { return c.RefreshPool("cpool") },
		"Requested operation is not valid: storage pool 'cpool' is not active"},
	{"pool destroy inactive", func(c driver.Conn, _ *confEnv) error { return c.DestroyPool("cpool") },
		"Requested operation is not valid: storage pool 'cpool' is not active"},
	{"pool build", func(c driver.Conn, _ *confEnv) error { return c.BuildPool("cpool", driver.PoolBuildFlags{}) }, ""},
	{"pool start", func(c driver.Conn, _ *confEnv) error { return c.StartPool("cpool") }, ""},
	{"vol create", func(c driver.Conn, _ *confEnv) error {
		v, err := c.CreateVolumeAs("cpool", driver.VolumeCreateAs{Name: "v1", CapacityBytes: 1 << 20, AllocationBytes: 1 << 20})
		if err == nil && (v.CapacityBytes != 1<<20 || v.Format != "raw" || v.Name != "v1") {
			err = fmt.Errorf("volume %+v", v)
		}
		return err
	}, ""},
	{"vol by path", func(c driver.Conn, env *confEnv) error {
		v, err := c.LookupVolume("", filepath.Join(env.poolDir, "v1"))
		if err == nil && (v.Name != "v1" || v.Pool != "cpool") {
			err = fmt.Errorf("volume %+v", v)
		}
		return err
	}, ""},
	{"vol missing", func(c driver.Conn, _ *confEnv) error { _, err := c.LookupVolume("cpool", "nope"); return err },
		"Storage volume not found: no storage vol with matching name 'nope'"},
	{"vol clone", func(c driver.Conn, _ *confEnv) error {
		v, _ := c.LookupVolume("cpool", "v1")
		_, err := c.CloneVolume(v, "v2")
		return err
	}, ""},
	{"vol delete", func(c driver.Conn, _ *confEnv) error {
		for _, n := range []string{"v1", "v2"} {
			v, err := c.LookupVolume("cpool", n)
			if err != nil {
				return err
			}
			if err := c.DeleteVolume(v); err != nil {
				return err
			}
		}
		vols, err := c.ListVolumes("cpool")
		if err == nil && len(vols) != 0 {
			err = fmt.Errorf("volumes left: %+v", vols)
		}
		return err
	}, ""},
	{"pool undefine active", func(c driver.Conn, _ *confEnv) error { return c.UndefinePool("cpool") },
		"Requested operation is not valid: storage pool 'cpool' is " + "%ACTIVE%"},
	{"pool destroy", func(c driver.Conn, _ *confEnv) error { return c.DestroyPool("cpool") }, ""},
	{"pool undefine", func(c driver.Conn, _ *confEnv) error { return c.UndefinePool("cpool") }, ""},
	{"pool gone", func(c driver.Conn, _ *confEnv) error { _, err := c.LookupPool("cpool"); return err },
		"Storage pool not found: no storage pool with matching name 'cpool'"},
}

// runConformance runs the shared table; active is how the driver words
// "pool is active" (libvirt's test driver says "is active", its storage
// driver "is already active").
func runConformance(t *testing.T, c driver.Conn, env *confEnv, active string) {
	for _, s := range conformance {
		err := s.do(c, env)
		want := strings.ReplaceAll(s.want, "%ACTIVE%", active)
		switch {
		case want == "" && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case want != "" && err == nil:
			t.Fatalf("%s: no error, want %q", s.name, want)
		case want != "" && err.Error() != want:
			t.Fatalf("%s: error %q, want %q", s.name, err.Error(), want)
		}
	}
}

func TestConformanceTestDriver(t *testing.T) {
	c, err := driver.Open(testdriver.URI, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runConformance(t, c, &confEnv{poolDir: "/var/tmp/cpool"}, "active")
}

func TestConformanceLocal(t *testing.T) {
	c := openTemp(t)
	runConformance(t, c, &confEnv{poolDir: filepath.Join(t.TempDir(), "cpool")}, "already active")
}

// openTemp opens a session connection with its state in a temporary
// VSH_HOME.
func openTemp(t testing.TB) driver.Conn {
	t.Helper()
	home := t.TempDir()
	t.Setenv("VSH_HOME", home)
	c, err := driver.Open("vsh:///session", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var _ = os.Getenv
