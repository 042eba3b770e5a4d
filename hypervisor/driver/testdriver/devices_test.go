package testdriver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"vsh/hypervisor/driver"
)

// The expected values are what `virsh -c test:///default` (libvirt 9.0)
// prints for the same calls.

const nicsXML = `<domain type='test'>
  <name>t2</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>
    <interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/><target dev='tapx'/><link state='down'/></interface>
    <interface type='network'><mac address='52:54:00:00:00:03'/><source network='default'/></interface>
  </devices>
</domain>
`

func statLine(stats []driver.MemoryStat) string {
	var out []string
	for _, s := range stats {
		out = append(out, fmt.Sprintf("%s %d", s.Tag, s.Value))
	}
	return strings.Join(out, ", ")
}

func addrLine(ifs []driver.InterfaceAddresses) string {
	var out []string
	for _, i := range ifs {
		for _, a := range i.Addrs {
			out = append(out, fmt.Sprintf("%s %s %s %s/%d", i.Name, i.MAC, a.Type, a.Addr, a.Prefix))
		}
	}
	return strings.Join(out, ", ")
}

func TestDomainDevices(t *testing.T) {
	c := open(t)
	dd := c.(driver.DomainDevices)

	stats, err := dd.DomainMemoryStats("test")
	if err != nil {
		t.Fatal(err)
	}
	want := "actual 2097152, swap_in 0, swap_out 0, major_fault 0, minor_fault 0, unused 1048576, available 2097152, usable 1048576, last_update 627319920, disk_caches 262144, hugetlb_pgalloc 0, hugetlb_pgfail 0, rss 1048576"
	if got := statLine(stats); got != want {
		t.Errorf("dommemstat test:\n got %s\nwant %s", got, want)
	}
	if err := c.SetMemory("test", 1000000, driver.ModifyScope{}); err != nil {
		t.Fatal(err)
	}
	stats, _ = dd.DomainMemoryStats("test")
	if got := statLine(stats); !strings.HasPrefix(got, "actual 1000000, swap_in 0, swap_out 0, major_fault 0, minor_fault 0, unused 500000, available 1000000, usable 500000, last_update 627319920, disk_caches 125000,") {
		t.Errorf("dommemstat after setmem: %s", got)
	}

	before := time.Now().UnixMicro()
	for _, ref := range []string{"testnet0", "aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF"} {
		st, err := dd.InterfaceStats("test", ref)
		if err != nil {
			t.Fatalf("domifstat %s: %v", ref, err)
		}
		if st.RxBytes < before/10 || st.RxPackets != st.RxBytes/10 && st.RxPackets != st.RxBytes/10+1 || st.TxDrop <= 0 || st.TxPackets >= st.RxPackets {
			t.Errorf("domifstat %s: %+v", ref, st)
		}
	}
	_, err = dd.InterfaceStats("test", "vnet0")
	wantErr(t, "domifstat vnet0", err, "invalid argument: 'vnet0' is not a known interface")

	ifs, err := dd.InterfaceAddresses("test", "")
	if err != nil || addrLine(ifs) != "testnet0 aa:bb:cc:dd:ee:ff ipv4 192.168.122.3/24" {
		t.Errorf("domifaddr test: %q %v", addrLine(ifs), err)
	}
	_, err = dd.InterfaceAddresses("test", "bogus")
	wantErr(t, "domifaddr bogus", err, "invalid argument: Unknown IP address data source bogus")

	wantErr(t, "domif-setlink", dd.SetInterfaceLink("test", "testnet0", false, false),
		"this function is not supported by the connection driver: virDomainUpdateDeviceFlags")
	wantErr(t, "attach-interface", dd.AttachInterface("test", driver.InterfaceSpec{Type: "network", Source: "default"}, driver.DeviceScope{}),
		"this function is not supported by the connection driver: virDomainAttachDevice")
	wantErr(t, "attach-interface --config", dd.AttachInterface("test", driver.InterfaceSpec{Type: "network", Source: "default"}, driver.DeviceScope{ModifyScope: driver.ModifyScope{Config: true}, Flags: true}),
		"this function is not supported by the connection driver: virDomainAttachDeviceFlags")
	wantErr(t, "detach-interface", dd.DetachInterface("test", "network", "", driver.DeviceScope{}),
		"this function is not supported by the connection driver: virDomainDetachDevice")

	// A second domain: interfaces without a target get testnetN, and the
	// addresses depend on the domain ID; no balloon, no statistics.
	if _, err := c.DefineDomain([]byte(nicsXML), "t2.xml", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartDomain("t2", false); err != nil {
		t.Fatal(err)
	}
	ifs, err = dd.InterfaceAddresses("t2", "lease")
	want = "testnet0 52:54:00:00:00:01 ipv4 192.168.122.23/24, tapx 52:54:00:00:00:02 ipv4 192.168.0.2/24, testnet1 52:54:00:00:00:03 ipv4 192.168.122.25/24"
	if err != nil || addrLine(ifs) != want {
		t.Errorf("domifaddr t2:\n got %s (%v)\nwant %s", addrLine(ifs), err, want)
	}
	if stats, err := dd.DomainMemoryStats("t2"); err != nil || len(stats) != 0 {
		t.Errorf("dommemstat without a balloon: %+v %v", stats, err)
	}

	if err := dd.SetMemoryStatsPeriod("test", 5, driver.ModifyScope{}); err != nil {
		t.Fatal(err)
	}
	if x, _ := c.DomainXML("test", false); !strings.Contains(string(x), "<memballoon model='virtio'>\n      <stats period='5'/>\n      <address") {
		t.Errorf("stats period not in the live XML:\n%s", x)
	}
	if x, _ := c.DomainXML("test", true); strings.Contains(string(x), "period") {
		t.Errorf("stats period in the persistent XML:\n%s", x)
	}
	wantErr(t, "period without balloon", dd.SetMemoryStatsPeriod("t2", 5, driver.ModifyScope{}),
		"internal error: No memory balloon device configured, can not set the collection period")
	if err := c.DestroyDomain("test", false); err != nil {
		t.Fatal(err)
	}
	_, err = dd.DomainMemoryStats("test")
	wantErr(t, "dommemstat inactive", err, "Requested operation is not valid: domain is not running")
	_, err = dd.InterfaceStats("test", "testnet0")
	wantErr(t, "domifstat inactive", err, "Requested operation is not valid: domain is not running")
	_, err = dd.InterfaceAddresses("test", "")
	wantErr(t, "domifaddr inactive", err, "Requested operation is not valid: domain is not running")
}
