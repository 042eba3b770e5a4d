package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// procEngine's devices live in files of the domain's run directory, next
// to the VMM stand-in process they belong to: vmm.balloon holds the
// balloon target, vmm.nics the interfaces (first derived from the running
// definition the driver wrote there, live.xml).

var _ DeviceEngine = (*procEngine)(nil)

func (e *procEngine) checkAlive(runDir string) error {
	if pid := e.pid(runDir); pid == 0 || !e.alive(pid) {
		return errors.New("Requested operation is not valid: VMM is gone")
	}
	return nil
}

func (e *procEngine) SetMemory(name, runDir string, kib uint64) error {
	if err := e.checkAlive(runDir); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(runDir, "vmm.balloon"), []byte(strconv.FormatUint(kib, 10)), 0o600)
}

func (e *procEngine) liveDef(runDir string) (*domxml.Domain, error) {
	b, err := os.ReadFile(filepath.Join(runDir, "live.xml"))
	if err != nil {
		return nil, err
	}
	return domxml.ParseDomain("live.xml", b, false)
}

func (e *procEngine) MemoryStats(name, runDir string) ([]driver.MemoryStat, error) {
	if err := e.checkAlive(runDir); err != nil {
		return nil, err
	}
	def, err := e.liveDef(runDir)
	if err != nil {
		return nil, err
	}
	actual := def.CurrentMemoryKiB
	if b, err := os.ReadFile(filepath.Join(runDir, "vmm.balloon")); err == nil {
		actual, _ = strconv.ParseUint(string(b), 10, 64)
	}
	return []driver.MemoryStat{{Tag: "actual", Value: actual}, {Tag: "unused", Value: actual / 2}}, nil
}

func (e *procEngine) Interfaces(name, runDir string) ([]EngineNIC, error) {
	if err := e.checkAlive(runDir); err != nil {
		return nil, err
	}
	var nics []EngineNIC
	if b, err := os.ReadFile(filepath.Join(runDir, "vmm.nics")); err == nil {
		return nics, json.Unmarshal(b, &nics)
	}
	def, err := e.liveDef(runDir)
	if err != nil {
		return nil, err
	}
	for i, n := range def.Devices.Interfaces {
		tap := n.TargetDev
		if tap == "" {
			tap = fmt.Sprintf("vnet%d", i)
		}
		k := int64(i + 1)
		nics = append(nics, EngineNIC{MAC: n.MAC, Tap: tap, LinkUp: n.LinkState != "down", Stats: driver.InterfaceStats{
			RxBytes: 100 * k, RxPackets: k, RxErrs: 0, RxDrop: 0, TxBytes: 200 * k, TxPackets: 2 * k, TxErrs: 0, TxDrop: k,
		}})
	}
	return nics, nil
}

func (e *procEngine) SetLink(name, runDir, mac string, up bool) error {
	nics, err := e.Interfaces(name, runDir)
	if err != nil {
		return err
	}
	for i := range nics {
		if sameMAC(nics[i].MAC, mac) {
			nics[i].LinkUp = up
			b, _ := json.Marshal(nics)
			return os.WriteFile(filepath.Join(runDir, "vmm.nics"), b, 0o600)
		}
	}
	return fmt.Errorf("invalid argument: no interface with MAC address %s", mac)
}

// leaseBackend is dirBackend with one lease per MAC address it knows.
type leaseBackend struct {
	dirBackend
	leases map[string]string // MAC -> address/prefix
}

func (b leaseBackend) Leases(n *domxml.Network, runDir, mac string) ([]driver.DHCPLease, error) {
	var out []driver.DHCPLease
	for m, addr := range b.leases {
		if mac == "" || sameMAC(m, mac) {
			out = append(out, driver.DHCPLease{Expiry: time.Unix(1, 0), MAC: m, Protocol: "ipv4", Address: addr})
		}
	}
	return out, nil
}

const nicDomainXML = `<domain type='kvm'>
  <name>nics</name>
  <memory unit='KiB'>65536</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <devices>
    <interface type='network'>
      <mac address='52:54:00:00:00:01'/>
      <source network='n1'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:02'/>
      <source bridge='br0'/>
      <target dev='tap7'/>
    </interface>
    <memballoon model='virtio'/>
  </devices>
</domain>
`

func TestDomainDevices(t *testing.T) {
	e := newProcEngine()
	DefaultEngine = e
	DefaultNetworkBackend = leaseBackend{leases: map[string]string{"52:54:00:00:00:01": "10.1.0.5/24", "52:54:00:00:00:99": "10.1.0.9/24"}}
	defer func() { DefaultEngine, DefaultNetworkBackend = nil, nil }()
	c := openTemp(t)
	dd := c.(driver.DomainDevices)
	_, err := c.DefineNetwork([]byte("<network><name>n1</name><ip address='10.1.0.1' netmask='255.255.255.0'/></network>"), "n1.xml", false)
	mustDo(t, "define network", err)
	mustDo(t, "start network", c.StartNetwork("n1"))
	_, err = c.DefineDomain([]byte(nicDomainXML), "nics.xml", false)
	mustDo(t, "define", err)

	// Inactive domain: the live calls refuse, config changes work.
	_, err = dd.DomainMemoryStats("nics")
	wantErr(t, "memstats inactive", err, "Requested operation is not valid: domain is not running")
	_, err = dd.InterfaceStats("nics", "tap7")
	wantErr(t, "ifstat inactive", err, "Requested operation is not valid: domain is not running")
	_, err = dd.InterfaceAddresses("nics", "")
	wantErr(t, "ifaddr inactive", err, "Requested operation is not valid: domain is not running")
	wantErr(t, "attach without flags, inactive", dd.AttachInterface("nics", driver.InterfaceSpec{Type: "network", Source: "n1"}, driver.DeviceScope{}),
		"Requested operation is not valid: domain is not running")
	mustDo(t, "attach --config", dd.AttachInterface("nics", driver.InterfaceSpec{Type: "ethernet", MAC: "52:54:00:00:00:03", Target: "tap9"},
		driver.DeviceScope{ModifyScope: driver.ModifyScope{Config: true}, Flags: true}))
	wantErr(t, "attach user", dd.AttachInterface("nics", driver.InterfaceSpec{Type: "user"}, driver.DeviceScope{Flags: true}),
		"unsupported configuration: interface type 'user' is not supported; the vsh engine connects network, bridge and ethernet interfaces")
	wantErr(t, "attach duplicate MAC", dd.AttachInterface("nics", driver.InterfaceSpec{Type: "bridge", Source: "br1", MAC: "52:54:00:00:00:03"}, driver.DeviceScope{Flags: true}),
		"operation failed: an interface with MAC address 52:54:00:00:00:03 already exists")
	mustDo(t, "setlink inactive", dd.SetInterfaceLink("nics", "tap9", false, false))
	x, _ := c.DomainXML("nics", true)
	if want := "    <interface type='ethernet'>\n      <mac address='52:54:00:00:00:03'/>\n      <target dev='tap9'/>\n      <link state='down'/>\n    </interface>\n"; !strings.Contains(string(x), want) {
		t.Errorf("attached interface with its link state missing:\n%s", x)
	}
	wantErr(t, "detach ambiguous type", dd.DetachInterface("nics", "bridge", "52:54:00:00:00:09", driver.DeviceScope{Flags: true}),
		"operation failed: No interface with MAC address 52:54:00:00:00:09 was found")
	wantErr(t, "detach missing type", dd.DetachInterface("nics", "direct", "", driver.DeviceScope{Flags: true}),
		"operation failed: No interface found whose type is direct")
	mustDo(t, "detach --config", dd.DetachInterface("nics", "ethernet", "", driver.DeviceScope{Flags: true}))
	if x, _ := c.DomainXML("nics", true); strings.Contains(string(x), "tap9") {
		t.Errorf("detached interface still there:\n%s", x)
	}

	_, err = c.StartDomain("nics", false)
	mustDo(t, "start", err)
	if x, _ := c.DomainXML("nics", false); !strings.Contains(string(x), "<source network='n1'/>\n      <target dev='vnet0'/>\n      <model type='virtio'/>") {
		t.Errorf("running definition does not name the tap:\n%s", x)
	}
	stats, err := dd.DomainMemoryStats("nics")
	if err != nil || len(stats) == 0 || stats[0] != (driver.MemoryStat{Tag: "actual", Value: 65536}) {
		t.Errorf("memstats: %+v %v", stats, err)
	}
	mustDo(t, "setmem live", c.SetMemory("nics", 32768, driver.ModifyScope{Live: true}))
	if stats, _ := dd.DomainMemoryStats("nics"); stats[0].Value != 32768 {
		t.Errorf("memstats after setmem: %+v", stats)
	}
	wantErr(t, "setmem above max", c.SetMemory("nics", 1<<20, driver.ModifyScope{Live: true}),
		"invalid argument: cannot set memory higher than max memory")

	for _, ref := range []string{"vnet0", "52:54:00:00:00:01", "52-54-00-00-00-01"} {
		st, err := dd.InterfaceStats("nics", ref)
		if err != nil || st.RxBytes != 100 || st.TxDrop != 1 {
			t.Errorf("ifstat %s: %+v %v", ref, st, err)
		}
	}
	if st, err := dd.InterfaceStats("nics", "tap7"); err != nil || st.RxBytes != 200 {
		t.Errorf("ifstat tap7: %+v %v", st, err)
	}
	_, err = dd.InterfaceStats("nics", "vnet5")
	wantErr(t, "ifstat unknown", err, "invalid argument: 'vnet5' is not a known interface")

	addrs, err := dd.InterfaceAddresses("nics", "lease")
	if err != nil || len(addrs) != 1 || addrs[0].Name != "vnet0" || addrs[0].MAC != "52:54:00:00:00:01" ||
		len(addrs[0].Addrs) != 1 || addrs[0].Addrs[0] != (driver.IPAddress{Type: "ipv4", Addr: "10.1.0.5", Prefix: 24}) {
		t.Errorf("ifaddr: %+v %v", addrs, err)
	}
	_, err = dd.InterfaceAddresses("nics", "agent")
	wantErr(t, "ifaddr agent", err, "Guest agent is not responding: the vsh engine has no guest agent channel")

	// Link state: live through the engine and the running definition,
	// the configuration untouched.
	mustDo(t, "setlink live", dd.SetInterfaceLink("nics", "tap7", false, false))
	nics, _ := e.Interfaces("nics", filepath.Join(os.Getenv("VSH_HOME"), "run", "domains", "nics"))
	if len(nics) != 2 || !nics[0].LinkUp || nics[1].LinkUp {
		t.Errorf("engine links after setlink: %+v", nics)
	}
	if x, _ := c.DomainXML("nics", false); !strings.Contains(string(x), "<target dev='tap7'/>\n      <link state='down'/>") {
		t.Errorf("live XML has no link state:\n%s", x)
	}
	if x, _ := c.DomainXML("nics", true); strings.Contains(string(x), "state=") {
		t.Errorf("setlink live changed the configuration:\n%s", x)
	}
	wantErr(t, "setlink unknown", dd.SetInterfaceLink("nics", "vnet8", true, false), "operation failed: network device vnet8 not found")

	// Hotplug is refused without touching anything.
	wantErr(t, "attach live", dd.AttachInterface("nics", driver.InterfaceSpec{Type: "network", Source: "n1"}, driver.DeviceScope{}),
		"Operation not supported: live hotplug of network interfaces is not supported by the vsh engine yet; use --config")
	wantErr(t, "detach live+config", dd.DetachInterface("nics", "bridge", "", driver.DeviceScope{ModifyScope: driver.ModifyScope{Live: true, Config: true}, Flags: true}),
		"Operation not supported: live hotplug of network interfaces is not supported by the vsh engine yet; use --config")
	mustDo(t, "detach --config while running", dd.DetachInterface("nics", "bridge", "", driver.DeviceScope{ModifyScope: driver.ModifyScope{Config: true}, Flags: true}))
	if x, _ := c.DomainXML("nics", false); !strings.Contains(string(x), "br0") {
		t.Errorf("detach --config changed the running definition:\n%s", x)
	}
	if x, _ := c.DomainXML("nics", true); strings.Contains(string(x), "br0") {
		t.Errorf("detach --config left the interface:\n%s", x)
	}
	wantErr(t, "period live", dd.SetMemoryStatsPeriod("nics", 5, driver.ModifyScope{}),
		"Operation not supported: the vsh engine cannot change the balloon statistics period of a running domain; use --config")
	mustDo(t, "period --config", dd.SetMemoryStatsPeriod("nics", 5, driver.ModifyScope{Config: true}))
	if x, _ := c.DomainXML("nics", true); !strings.Contains(string(x), "<memballoon model='virtio'>\n      <stats period='5'/>\n    </memballoon>") {
		t.Errorf("stats period not in the configuration:\n%s", x)
	}
	mustDo(t, "destroy", c.DestroyDomain("nics", false))
}

func TestReadARP(t *testing.T) {
	p := filepath.Join(t.TempDir(), "arp")
	os.WriteFile(p, []byte("IP address       HW type     Flags       HW address            Mask     Device\n"+
		"10.1.0.5         0x1         0x2         52:54:00:00:00:01     *        vshbr0\n"+
		"10.1.0.6         0x1         0x0         00:00:00:00:00:00     *        vshbr0\n"+
		"short\n"), 0o600)
	got, err := readARP(p)
	if err != nil || len(got) != 1 || got[0] != (arpEntry{ip: "10.1.0.5", mac: "52:54:00:00:00:01"}) {
		t.Errorf("readARP: %+v %v", got, err)
	}
}

func FuzzParseARP(f *testing.F) {
	f.Add("IP address HW type Flags HW address Mask Device\n10.1.0.5 0x1 0x2 52:54:00:00:00:01 * br0\n")
	f.Add("header\n::1 0x1 0x2 zz *\n\n   \n")
	f.Fuzz(func(t *testing.T, text string) {
		entries, _ := parseARP(strings.NewReader(text))
		for _, e := range entries {
			if net.ParseIP(e.ip) == nil {
				t.Errorf("entry with a bad IP: %+v", e)
			}
			if _, err := net.ParseMAC(e.mac); err != nil {
				t.Errorf("entry with a bad MAC: %+v", e)
			}
		}
	})
}
