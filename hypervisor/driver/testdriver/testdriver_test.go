package testdriver

import (
	"strings"
	"testing"

	"vsh/hypervisor/driver"
)

const vm1XML = `<domain type='test'>
  <name>vm1</name>
  <uuid>454f2712-406f-4352-9ba9-fcb18b18dc16</uuid>
  <title>My first VM</title>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static' current='1'>4</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <boot dev='hd'/>
  </os>
</domain>
`

func open(t *testing.T) driver.Conn {
	t.Helper()
	c, err := driver.Open("test:///default", false)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantErr checks that err is a driver error with exactly the given text.
func wantErr(t *testing.T, what string, err error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %q", what, text)
	}
	if err.Error() != text {
		t.Fatalf("%s: error %q, want %q", what, err.Error(), text)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestDefaultHost(t *testing.T) {
	c := open(t)
	doms, err := c.ListDomains()
	must(t, "list", err)
	if len(doms) != 1 {
		t.Fatalf("domains: %+v", doms)
	}
	d := doms[0]
	if d.ID != 1 || d.Name != "test" || d.UUID != "6695eb01-f6a4-8304-79aa-97f2502e193f" || d.State != driver.StateRunning ||
		d.Reason != driver.RunningUnknown || d.VCPUs != 2 || d.MaxMemKiB != 8388608 || d.MemoryKiB != 2097152 ||
		!d.Persistent || d.Autostart || d.OSType != "linux" || d.SecurityModel != "testSecurity" {
		t.Errorf("default domain: %+v", d)
	}
	for _, ref := range []string{"1", "test", "6695eb01-f6a4-8304-79aa-97f2502e193f", "6695eb01f6a4830479aa97f2502e193f"} {
		if got, err := c.LookupDomain(ref); err != nil || got.Name != "test" {
			t.Errorf("lookup %q: %+v, %v", ref, got, err)
		}
	}
	_, err = c.LookupDomain("nope")
	wantErr(t, "lookup nope", err, "Domain not found: no domain with matching name 'nope'")

	nets, err := c.ListNetworks()
	must(t, "net list", err)
	if len(nets) != 1 || nets[0] != (driver.NetworkInfo{Name: "default", UUID: "dd8fe884-6c02-601e-7551-cca97df1c5df", Active: true, Persistent: true, Bridge: "virbr0"}) {
		t.Errorf("networks: %+v", nets)
	}
	pools, err := c.ListPools()
	must(t, "pool list", err)
	if len(pools) != 1 || pools[0].Name != "default-pool" || pools[0].UUID != "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566" ||
		pools[0].State != driver.PoolRunning || pools[0].CapacityBytes != 100<<30 || pools[0].AvailableBytes != 100<<30 || pools[0].AllocationBytes != 0 {
		t.Errorf("pools: %+v", pools)
	}
	ni, _ := c.NodeInfo()
	if ni != (driver.NodeInfo{CPUModel: "i686", CPUs: 16, MHz: 1400, NUMANodes: 2, SocketsPerNode: 2, CoresPerSocket: 2, ThreadsPerCore: 2, MemoryKiB: 3145728}) {
		t.Errorf("nodeinfo: %+v", ni)
	}
	if name, v, _ := c.HypervisorVersion(); name != "TEST" || v != 2 {
		t.Errorf("version: %s %d", name, v)
	}
	caps, _ := c.Capabilities()
	if !strings.Contains(caps, "<capabilities>") || !strings.Contains(caps, "<arch>i686</arch>") {
		t.Errorf("capabilities: %.80s", caps)
	}
	x, err := c.DomainXML("test", false)
	must(t, "dumpxml", err)
	if !strings.HasPrefix(string(x), "<domain type='test' id='1'>") {
		t.Errorf("live XML starts %.40q", x)
	}
	x, _ = c.DomainXML("test", true)
	if !strings.HasPrefix(string(x), "<domain type='test'>") {
		t.Errorf("inactive XML starts %.40q", x)
	}
}

// TestLifecycle follows captures/lifecycle.txt and ops.txt.
func TestLifecycle(t *testing.T) {
	c := open(t)
	info, err := c.DefineDomain([]byte(vm1XML), "vm1.xml", false)
	must(t, "define", err)
	if info.ID != -1 || info.State != driver.StateShutoff || info.VCPUs != 1 || info.MaxMemKiB != 1048576 || info.MemoryKiB != 524288 || info.Title != "My first VM" {
		t.Fatalf("defined: %+v", info)
	}
	// Redefining the same XML is fine; another UUID under the name is not.
	_, err = c.DefineDomain([]byte(vm1XML), "vm1.xml", false)
	must(t, "redefine", err)
	other := strings.Replace(vm1XML, "454f2712", "c1fd9615", 1)
	_, err = c.DefineDomain([]byte(other), "vm1.xml", false)
	wantErr(t, "define dup", err, "operation failed: domain 'vm1' already exists with uuid 454f2712-406f-4352-9ba9-fcb18b18dc16")
	renamed := strings.Replace(vm1XML, "<name>vm1</name>", "<name>vmX</name>", 1)
	_, err = c.DefineDomain([]byte(renamed), "vm1.xml", false)
	wantErr(t, "define uuid dup", err, "operation failed: domain 'vm1' is already defined with uuid 454f2712-406f-4352-9ba9-fcb18b18dc16")

	wantErr(t, "suspend off", c.SuspendDomain("vm1"), "internal error: domain 'vm1' not running")
	wantErr(t, "resume off", c.ResumeDomain("vm1"), "internal error: domain 'vm1' not paused")
	wantErr(t, "destroy off", c.DestroyDomain("vm1", false), "Requested operation is not valid: domain is not running")
	wantErr(t, "shutdown off", c.ShutdownDomain("vm1", ""), "internal error: domain 'vm1' not running")
	wantErr(t, "reboot off", c.RebootDomain("vm1", ""), "Requested operation is not valid: domain is not running")

	info, err = c.StartDomain("vm1", false)
	must(t, "start", err)
	if info.ID != 2 || info.State != driver.StateRunning || info.Reason != driver.RunningBooted {
		t.Fatalf("started: %+v", info)
	}
	_, err = c.StartDomain("vm1", false)
	wantErr(t, "start again", err, "Requested operation is not valid: Domain 'vm1' is already running")
	if got, _ := c.LookupDomain("2"); got.Name != "vm1" {
		t.Errorf("lookup by id 2: %+v", got)
	}
	must(t, "suspend", c.SuspendDomain("vm1"))
	wantErr(t, "suspend again", c.SuspendDomain("vm1"), "internal error: domain 'vm1' not running")
	if got, _ := c.LookupDomain("vm1"); got.State != driver.StatePaused || got.Reason != driver.PausedUser {
		t.Errorf("paused: %+v", got)
	}
	must(t, "resume", c.ResumeDomain("vm1"))
	must(t, "shutdown", c.ShutdownDomain("vm1", ""))
	if got, _ := c.LookupDomain("vm1"); got.State != driver.StateShutoff || got.Reason != driver.ShutoffShutdown || got.ID != -1 {
		t.Errorf("after shutdown: %+v", got)
	}
	info, _ = c.StartDomain("vm1", false)
	if info.ID != 3 {
		t.Errorf("IDs must increase: got %d, want 3", info.ID)
	}
	must(t, "reboot", c.RebootDomain("vm1", ""))
	must(t, "reset", c.ResetDomain("vm1"))
	if got, _ := c.LookupDomain("vm1"); got.ID != 3 || got.State != driver.StateRunning {
		t.Errorf("after reboot: %+v", got)
	}
	wantErr(t, "rename running", c.RenameDomain("vm1", "vm2"), "Requested operation is not valid: cannot rename active domain")
	must(t, "destroy", c.DestroyDomain("vm1", false))
	if got, _ := c.LookupDomain("vm1"); got.Reason != driver.ShutoffDestroyed {
		t.Errorf("after destroy: %+v", got)
	}
	must(t, "rename", c.RenameDomain("vm1", "vm2"))
	_, err = c.LookupDomain("vm1")
	wantErr(t, "old name", err, "Domain not found: no domain with matching name 'vm1'")
	must(t, "undefine", c.UndefineDomain("vm2", driver.UndefineFlags{}))
	_, err = c.LookupDomain("vm2")
	wantErr(t, "undefined", err, "Domain not found: no domain with matching name 'vm2'")
}

// TestTransient follows captures/transient.txt: create makes a transient
// domain, undefine of a running domain makes it transient, and transient
// domains vanish when they stop.
func TestTransient(t *testing.T) {
	c := open(t)
	info, err := c.CreateDomain([]byte(vm1XML), "tvm.xml", false, false)
	must(t, "create", err)
	if info.ID != 2 || info.Persistent || info.State != driver.StateRunning {
		t.Fatalf("created: %+v", info)
	}
	_, err = c.CreateDomain([]byte(vm1XML), "tvm.xml", false, false)
	wantErr(t, "create again", err, "Requested operation is not valid: domain 'vm1' is already active")
	// libvirt's test driver (unlike its real drivers) accepts these.
	must(t, "undefine transient", c.UndefineDomain("vm1", driver.UndefineFlags{}))
	must(t, "autostart transient", c.SetDomainAutostart("vm1", true))
	must(t, "destroy", c.DestroyDomain("vm1", false))
	if _, err := c.LookupDomain("vm1"); driver.Code(err) != driver.ErrNoDomain {
		t.Fatalf("transient domain survived destroy: %v", err)
	}

	must(t, "undefine test", c.UndefineDomain("test", driver.UndefineFlags{}))
	info, err = c.LookupDomain("test")
	if err != nil || info.Persistent || info.ID != 1 {
		t.Fatalf("running undefined domain: %+v %v", info, err)
	}
	must(t, "shutdown test", c.ShutdownDomain("test", ""))
	doms, _ := c.ListDomains()
	if len(doms) != 0 {
		t.Fatalf("domains left: %+v", doms)
	}
}

func TestEdits(t *testing.T) {
	c := open(t)
	_, err := c.DefineDomain([]byte(vm1XML), "vm1.xml", false)
	must(t, "define", err)
	cur := driver.ModifyScope{}
	wantErr(t, "setmem live", c.SetMemory("vm1", 1000, driver.ModifyScope{Live: true}), "Requested operation is not valid: domain is not running")
	wantErr(t, "setmem too big", c.SetMemory("vm1", 2<<20, cur), "invalid argument: cannot set memory higher than max memory")
	must(t, "setmem", c.SetMemory("vm1", 262144, cur))
	must(t, "setmaxmem", c.SetMaxMemory("vm1", 2097152, cur))
	info, _ := c.LookupDomain("vm1")
	if info.MemoryKiB != 262144 || info.MaxMemKiB != 2097152 {
		t.Errorf("memory: %+v", info)
	}
	must(t, "setvcpus max", c.SetVCPUs("vm1", 3, true, driver.ModifyScope{Config: true}))
	must(t, "setvcpus", c.SetVCPUs("vm1", 2, false, cur))
	wantErr(t, "setvcpus over max", c.SetVCPUs("vm1", 5, false, cur), "invalid argument: requested cpu amount exceeds maximum (5 > 3)")
	n, _ := c.VCPUCount("vm1")
	if n != (driver.VCPUCount{MaxConfig: 3, MaxLive: -1, CurrentConfig: 2, CurrentLive: -1}) {
		t.Errorf("vcpucount: %+v", n)
	}
	n, _ = c.VCPUCount("test")
	if n != (driver.VCPUCount{MaxConfig: 2, MaxLive: 2, CurrentConfig: 2, CurrentLive: 2}) {
		t.Errorf("vcpucount test: %+v", n)
	}
	// A live change on a running persistent domain leaves the config alone.
	must(t, "setvcpus live", c.SetVCPUs("test", 1, false, cur))
	n, _ = c.VCPUCount("test")
	if n != (driver.VCPUCount{MaxConfig: 2, MaxLive: 2, CurrentConfig: 2, CurrentLive: 1}) {
		t.Errorf("vcpucount test after live change: %+v", n)
	}
	if s, _ := c.DomainMetadata("vm1", false, cur); s != "" {
		t.Errorf("description %q", s)
	}
	must(t, "desc", c.SetDomainMetadata("vm1", false, "hello", cur))
	must(t, "title", c.SetDomainMetadata("vm1", true, "tt", cur))
	wantErr(t, "title newline", c.SetDomainMetadata("vm1", true, "a\nb", cur), "invalid argument: title can't contain newlines")
	if s, _ := c.DomainMetadata("vm1", false, cur); s != "hello" {
		t.Errorf("description %q", s)
	}
	if info, _ := c.LookupDomain("vm1"); info.Title != "tt" {
		t.Errorf("title %q", info.Title)
	}
	must(t, "autostart", c.SetDomainAutostart("vm1", true))
	if info, _ := c.LookupDomain("vm1"); !info.Autostart {
		t.Errorf("autostart not set")
	}
	x, _ := c.DomainXML("vm1", false)
	for _, want := range []string{"<title>tt</title>", "<description>hello</description>", "262144", "2097152"} {
		if !strings.Contains(string(x), want) {
			t.Errorf("XML lacks %s:\n%s", want, x)
		}
	}
}

func TestReadOnly(t *testing.T) {
	c, err := driver.Open("test:///default", true)
	must(t, "open", err)
	defer c.Close()
	_, err = c.DefineDomain([]byte(vm1XML), "vm1.xml", false)
	wantErr(t, "define", err, "operation forbidden: read only access prevents virDomainDefineXML")
	wantErr(t, "destroy", c.DestroyDomain("test", false), "operation forbidden: read only access prevents virDomainDestroy")
	if _, err := c.ListDomains(); err != nil {
		t.Errorf("list: %v", err)
	}
}

// TestFreshState checks that state is per process and forgotten when the
// last connection closes.
func TestFreshState(t *testing.T) {
	c, _ := driver.Open("test:///default", false)
	must(t, "destroy", c.DestroyDomain("test", false))
	c2, _ := driver.Open("test:///default", false)
	if d, _ := c2.LookupDomain("test"); d.Active() {
		t.Fatalf("second connection does not share state")
	}
	c.Close()
	c2.Close()
	c3 := open(t)
	if d, _ := c3.LookupDomain("test"); !d.Active() || d.ID != 1 {
		t.Fatalf("state not reset: %+v", d)
	}
}

func TestNetworks(t *testing.T) {
	c := open(t)
	const net1 = `<network><name>net1</name><forward mode='nat'/><bridge name='virbr1'/><ip address='10.10.0.1' netmask='255.255.255.0'/></network>`
	info, err := c.DefineNetwork([]byte(net1), "net1.xml", false)
	must(t, "define", err)
	if info.Active || !info.Persistent || info.Bridge != "virbr1" || info.UUID == "" {
		t.Fatalf("defined: %+v", info)
	}
	_, err = c.DefineNetwork([]byte(net1), "net1.xml", false)
	wantErr(t, "define dup", err, "operation failed: network 'net1' already exists with uuid "+info.UUID)
	must(t, "start", c.StartNetwork("net1"))
	wantErr(t, "start again", c.StartNetwork("net1"), "Requested operation is not valid: Network 'net1' is already running")
	wantErr(t, "undefine running", c.UndefineNetwork("net1"), "Requested operation is not valid: Network 'net1' is still running")
	must(t, "autostart", c.SetNetworkAutostart("net1", true))
	got, _ := c.LookupNetwork(info.UUID)
	if !got.Active || !got.Autostart || got.Name != "net1" {
		t.Errorf("after start: %+v", got)
	}
	must(t, "destroy", c.DestroyNetwork("net1"))
	must(t, "undefine", c.UndefineNetwork("net1"))
	_, err = c.LookupNetwork("net1")
	wantErr(t, "gone", err, "Network not found: no network with matching name 'net1'")

	_, err = c.CreateNetwork([]byte(net1), "net1.xml", false)
	must(t, "create", err)
	must(t, "destroy transient", c.DestroyNetwork("net1"))
	if _, err := c.LookupNetwork("net1"); err == nil {
		t.Fatalf("transient network survived destroy")
	}
	_, err = c.NetworkLeases("default", "")
	wantErr(t, "leases", err, "this function is not supported by the connection driver: virNetworkGetDHCPLeases")
}

func TestStorage(t *testing.T) {
	c := open(t)
	const pool1 = `<pool type='dir'><name>pool1</name><target><path>/var/tmp/pool1</path></target></pool>`
	info, err := c.DefinePool([]byte(pool1), "pool1.xml", false)
	must(t, "define", err)
	if info.State != driver.PoolInactive || info.CapacityBytes != 100<<30 || info.TargetPath != "/var/tmp/pool1" {
		t.Fatalf("defined: %+v", info)
	}
	wantErr(t, "destroy inactive", c.DestroyPool("pool1"), "Requested operation is not valid: storage pool 'pool1' is not active")
	wantErr(t, "refresh inactive", c.RefreshPool("pool1"), "Requested operation is not valid: storage pool 'pool1' is not active")
	_, err = c.CreateVolumeAs("pool1", driver.VolumeCreateAs{Name: "a", CapacityBytes: 1 << 30})
	wantErr(t, "vol in inactive pool", err, "Requested operation is not valid: storage pool 'pool1' is not active")
	_, err = c.ListVolumes("pool1")
	wantErr(t, "list inactive", err, "Requested operation is not valid: storage pool is not active")
	must(t, "build", c.BuildPool("pool1", driver.PoolBuildFlags{}))
	must(t, "start", c.StartPool("pool1"))
	wantErr(t, "start again", c.StartPool("pool1"), "Requested operation is not valid: storage pool 'pool1' is active")
	wantErr(t, "undefine active", c.UndefinePool("pool1"), "Requested operation is not valid: storage pool 'pool1' is active")

	sp, err := c.CreateVolumeAs("pool1", driver.VolumeCreateAs{Name: "sparse", CapacityBytes: 1 << 20, AllocationSet: true})
	must(t, "create-as --allocation 0", err)
	if sp.AllocationBytes != 0 {
		t.Errorf("--allocation 0: %+v", sp)
	}
	must(t, "delete sparse", c.DeleteVolume(sp))
	v, err := c.CreateVolumeAs("pool1", driver.VolumeCreateAs{Name: "a", CapacityBytes: 1 << 30})
	must(t, "create-as", err)
	if v.Path != "/var/tmp/pool1/a" || v.CapacityBytes != 1<<30 || v.AllocationBytes != 1<<30 || v.Format != "raw" {
		t.Errorf("volume: %+v", v)
	}
	_, err = c.CreateVolumeAs("pool1", driver.VolumeCreateAs{Name: "a", CapacityBytes: 1 << 20})
	wantErr(t, "dup vol", err, "operation failed: storage vol already exists")
	_, err = c.CreateVolumeAs("pool1", driver.VolumeCreateAs{Name: "big", CapacityBytes: 200 << 30})
	wantErr(t, "too big", err, "internal error: Not enough free space in pool for volume 'big'")
	const vol1 = `<volume><name>disk1.qcow2</name><capacity unit='G'>10</capacity><allocation>0</allocation><target><format type='qcow2'/></target></volume>`
	v2, err := c.CreateVolume("pool1", []byte(vol1), "vol1.xml", false)
	must(t, "create", err)
	if v2.CapacityBytes != 10<<30 || v2.AllocationBytes != 0 || v2.Format != "qcow2" {
		t.Errorf("xml volume: %+v", v2)
	}
	cl, err := c.CloneVolume(v, "b")
	must(t, "clone", err)
	if cl.Path != "/var/tmp/pool1/b" || cl.CapacityBytes != 1<<30 {
		t.Errorf("clone: %+v", cl)
	}
	got, err := c.LookupVolume("", "/var/tmp/pool1/b")
	if err != nil || got.Name != "b" || got.Pool != "pool1" {
		t.Errorf("lookup by path: %+v %v", got, err)
	}
	p, _ := c.LookupPool("pool1")
	if p.AllocationBytes != 2<<30 || p.AvailableBytes != 98<<30 {
		t.Errorf("pool sizes: %+v", p)
	}
	wantErr(t, "resize", c.ResizeVolume(v, 2<<30, driver.VolumeResizeFlags{}), "this function is not supported by the connection driver: virStorageVolResize")
	wantErr(t, "wipe", c.WipeVolume(v), "this function is not supported by the connection driver: virStorageVolWipe")
	must(t, "delete", c.DeleteVolume(v))
	_, err = c.LookupVolume("pool1", "a")
	wantErr(t, "deleted", err, "Storage volume not found: no storage vol with matching name 'a'")
	_, err = c.LookupVolume("", "a")
	wantErr(t, "by path", err, "Storage volume not found: no storage vol with matching path 'a'")
	vols, _ := c.ListVolumes("pool1")
	if len(vols) != 2 {
		t.Errorf("volumes: %+v", vols)
	}
	must(t, "destroy", c.DestroyPool("pool1"))
	wantErr(t, "delete active", c.DeletePool("default-pool"), "Requested operation is not valid: storage pool 'default-pool' is active")
	must(t, "delete", c.DeletePool("pool1"))
	must(t, "undefine", c.UndefinePool("pool1"))
	_, err = c.LookupPool("pool1")
	wantErr(t, "gone", err, "Storage pool not found: no storage pool with matching name 'pool1'")
}

// TestNetworkDefaults checks that a defined network gets a UUID and, as
// with libvirt's test driver, no generated bridge name.
func TestNetworkDefaults(t *testing.T) {
	c := open(t)
	info, err := c.DefineNetwork([]byte("<network>\n  <name>n1</name>\n  <forward mode='nat'/>\n  <ip address='10.9.0.1' prefix='24'/>\n</network>\n"), "n1.xml", false)
	must(t, "define", err)
	if len(info.UUID) != 36 || info.Bridge != "" {
		t.Errorf("defined: %+v", info)
	}
	x, _ := c.NetworkXML("n1", false)
	if !strings.Contains(string(x), "  <name>n1</name>\n  <uuid>"+info.UUID+"</uuid>\n") {
		t.Errorf("XML:\n%s", x)
	}
}

// TestVolumeXML checks vol-dumpxml against captures/netpool.txt.
func TestVolumeXML(t *testing.T) {
	c := open(t)
	v, err := c.CreateVolume("default-pool", []byte("<volume>\n  <name>disk1.qcow2</name>\n  <capacity unit='G'>10</capacity>\n  <allocation>0</allocation>\n  <target><format type='qcow2'/></target>\n</volume>\n"), "vol1.xml", false)
	must(t, "create", err)
	x, err := c.VolumeXML(v)
	must(t, "xml", err)
	want := `<volume type='file'>
  <name>disk1.qcow2</name>
  <key>/default-pool/disk1.qcow2</key>
  <capacity unit='bytes'>10737418240</capacity>
  <allocation unit='bytes'>0</allocation>
  <target>
    <path>/default-pool/disk1.qcow2</path>
    <format type='qcow2'/>
  </target>
</volume>
`
	if string(x) != want {
		t.Errorf("vol-dumpxml:\n%s\nwant:\n%s", x, want)
	}
}
