package domxml

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestParseNetwork(t *testing.T) {
	n, err := ParseNetwork("net-nat.xml", readFile(t, "../examples/domains/net-nat.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "nat" || n.Forward != (Forward{Mode: "nat"}) || n.Bridge != (Bridge{Name: "vshbr0", STP: "on"}) || n.Domain != "nat.test" {
		t.Errorf("network = %+v", n)
	}
	wantIP := []IP{{Address: "192.168.150.1", Netmask: "255.255.255.0",
		DHCPRanges: []DHCPRange{{"192.168.150.100", "192.168.150.200"}},
		DHCPHosts:  []DHCPHost{{"52:54:00:12:34:56", "smp-virtio", "192.168.150.10"}}}}
	if !reflect.DeepEqual(n.IPs, wantIP) {
		t.Errorf("IPs = %+v", n.IPs)
	}
	if want := (DNS{Hosts: []DNSHost{{"192.168.150.10", []string{"smp-virtio"}}}}); !reflect.DeepEqual(n.DNS, want) {
		t.Errorf("DNS = %+v", n.DNS)
	}
	s, err := n.Subnet()
	if err != nil || s.String() != "192.168.150.0/24" {
		t.Errorf("Subnet = %v, %v", s, err)
	}

	iso, err := ParseNetwork("net-isolated.xml", readFile(t, "../examples/domains/net-isolated.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if iso.Forward.Mode != "" || iso.IPs[0].Prefix != 24 {
		t.Errorf("isolated = %+v", iso)
	}
}

func TestIPNet(t *testing.T) {
	tests := []struct {
		ip   IP
		want string
	}{
		{IP{Address: "10.1.2.1", Prefix: 16}, "10.1.2.1/16"},
		{IP{Address: "192.168.1.1", Netmask: "255.255.255.128"}, "192.168.1.1/25"},
		{IP{Address: "192.168.1.1"}, "192.168.1.1/24"},
		{IP{Address: "10.0.0.1"}, "10.0.0.1/8"},
		{IP{Family: "ipv6", Address: "fd00::1", Prefix: 64}, "fd00::1/64"},
		{IP{Address: "10.0.0.1", Netmask: "255.0.255.0"}, "error"},
		{IP{Address: "10.0.0.1", Prefix: 33}, "error"},
		{IP{Address: "nope", Prefix: 8}, "error"},
	}
	for _, tt := range tests {
		got, err := tt.ip.Net()
		s := "error"
		if err == nil {
			s = got.String()
		}
		if s != tt.want {
			t.Errorf("%+v.Net() = %s (%v), want %s", tt.ip, s, err, tt.want)
		}
	}
}

func TestNetworkFillDefaults(t *testing.T) {
	in := "<network>\n  <name>n</name>\n  <forward mode='nat'/>\n  <ip address='10.0.0.1' prefix='24'/>\n</network>\n"
	n, err := ParseNetwork("n.xml", []byte(in), false)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := n.FillDefaults([]string{"vshbr0", "vshbr1", "virbr2"})
	if err != nil || !changed {
		t.Fatalf("FillDefaults = %v, %v", changed, err)
	}
	got := regexp.MustCompile(`<uuid>[-0-9a-f]{36}</uuid>`).ReplaceAllString(string(n.XML()), "<uuid>U</uuid>")
	got = regexp.MustCompile(`52:54:00(:[0-9a-f]{2}){3}`).ReplaceAllString(got, "M")
	want := "<network>\n  <name>n</name>\n  <uuid>U</uuid>\n  <forward mode='nat'/>\n  <bridge name='vshbr2' stp='on' delay='0'/>\n  <mac address='M'/>\n  <ip address='10.0.0.1' prefix='24'/>\n</network>\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if n.Bridge.Name != "vshbr2" || n.UUID == "" || n.MAC == "" {
		t.Errorf("typed fields = %+v", n)
	}
	if changed, _ := n.FillDefaults(nil); changed {
		t.Error("second FillDefaults changed the document")
	}

	// A bridge without a name gets one, first among its attributes.
	n, _ = ParseNetwork("n.xml", []byte("<network>\n  <name>n</name>\n  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>\n  <bridge stp='off'/>\n  <mac address='52:54:00:00:00:01'/>\n</network>"), false)
	n.FillDefaults(nil)
	if !strings.Contains(string(n.XML()), "<bridge name='vshbr0' stp='off'/>") {
		t.Errorf("unnamed bridge: %s", n.XML())
	}
	// forward mode='bridge' uses the host's bridge; nothing to add but the uuid.
	n, _ = ParseNetwork("n.xml", []byte("<network><name>b</name><uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid><forward mode='bridge'/><bridge name='br0'/></network>"), false)
	if changed, _ := n.FillDefaults(nil); changed {
		t.Errorf("bridge network changed: %s", n.XML())
	}
}

func TestParsePoolAndSizes(t *testing.T) {
	p, err := ParsePool("pool-dir.xml", readFile(t, "../examples/domains/pool-dir.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	want := PoolTarget{Path: "/var/lib/vsh/images", Permissions: &Permissions{Mode: "0711", Owner: 0, Group: 0}}
	if p.Type != "dir" || p.Name != "images" || !reflect.DeepEqual(p.Target, want) {
		t.Errorf("pool = %+v target %+v", p, p.Target)
	}
	orig := string(p.XML())
	p.SetSizes(100, 40, 60)
	if p.CapacityBytes != 100 || p.AllocationBytes != 40 || p.AvailableBytes != 60 {
		t.Errorf("sizes = %d %d %d", p.CapacityBytes, p.AllocationBytes, p.AvailableBytes)
	}
	wantXML := strings.Replace(orig, "  <name>images</name>\n", "  <name>images</name>\n  <capacity unit='bytes'>100</capacity>\n  <allocation unit='bytes'>40</allocation>\n  <available unit='bytes'>60</available>\n", 1)
	if got := string(p.XML()); got != wantXML {
		t.Errorf("got\n%s\nwant\n%s", got, wantXML)
	}
	p.SetSizes(200, 50, 150) // updates in place
	if got := string(p.XML()); strings.Count(got, "<capacity") != 1 || !strings.Contains(got, "<capacity unit='bytes'>200</capacity>") {
		t.Errorf("second SetSizes:\n%s", got)
	}

	np := NewPool("lv", "logical", PoolSource{Name: "vg0", Device: "/dev/sdb", Format: "lvm2"}, "/dev/vg0")
	wantNew := "<pool type='logical'>\n  <name>lv</name>\n  <source>\n    <device path='/dev/sdb'/>\n    <name>vg0</name>\n    <format type='lvm2'/>\n  </source>\n  <target>\n    <path>/dev/vg0</path>\n  </target>\n</pool>\n"
	if got := string(np.XML()); got != wantNew {
		t.Errorf("NewPool:\n%s\nwant\n%s", got, wantNew)
	}
	if np.Source.Name != "vg0" || np.Target.Path != "/dev/vg0" {
		t.Errorf("NewPool model = %+v", np)
	}
}

func TestVolume(t *testing.T) {
	v, err := ParseVolume("vol-qcow2.xml", readFile(t, "../examples/domains/vol-qcow2.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "smp-virtio.qcow2" || v.CapacityBytes != 10<<30 || v.AllocationBytes != 0 || v.Target.Format != "qcow2" || v.Target.Permissions.Mode != "0600" {
		t.Errorf("volume = %+v", v)
	}
	orig := string(v.XML())
	v.SetKey("/var/lib/vsh/images/smp-virtio.qcow2")
	v.SetPath("/var/lib/vsh/images/smp-virtio.qcow2")
	v.SetSizes(10<<30, 196608)
	want := strings.Replace(orig, "  <name>smp-virtio.qcow2</name>\n", "  <name>smp-virtio.qcow2</name>\n  <key>/var/lib/vsh/images/smp-virtio.qcow2</key>\n", 1)
	want = strings.Replace(want, "<capacity unit='G'>10</capacity>\n  <allocation unit='bytes'>0</allocation>", "<capacity unit='bytes'>10737418240</capacity>\n  <allocation unit='bytes'>196608</allocation>", 1)
	want = strings.Replace(want, "  <target>\n", "  <target>\n    <path>/var/lib/vsh/images/smp-virtio.qcow2</path>\n", 1)
	if got := string(v.XML()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if v.Key == "" || v.Target.Path == "" || v.AllocationBytes != 196608 {
		t.Errorf("typed fields = %+v", v)
	}

	b, err := ParseVolume("b.xml", readFile(t, "/work/shared/reference/examples/vol-raw-backing.xml"), false)
	if err != nil || b.BackingStore == nil || *b.BackingStore != (BackingStore{"/var/lib/libvirt/images/base.qcow2", "qcow2"}) {
		t.Errorf("backing store not parsed: %+v", b)
	}

	nv := NewVolume("d.qcow2", 1<<30, 0, "qcow2", "/p/d.qcow2")
	wantNew := "<volume type='file'>\n  <name>d.qcow2</name>\n  <key>/p/d.qcow2</key>\n  <capacity unit='bytes'>1073741824</capacity>\n  <allocation unit='bytes'>0</allocation>\n  <target>\n    <path>/p/d.qcow2</path>\n    <format type='qcow2'/>\n  </target>\n</volume>\n"
	if got := string(nv.XML()); got != wantNew {
		t.Errorf("NewVolume:\n%s\nwant\n%s", got, wantNew)
	}
	nv.SetFormat("raw")
	if nv.Target.Format != "raw" || !strings.Contains(string(nv.XML()), "<format type='raw'/>") {
		t.Errorf("SetFormat: %s", nv.XML())
	}
	if c := nv.Clone(); c.Target.Format != "raw" || c.Name != "d.qcow2" {
		t.Errorf("Clone = %+v", c)
	}
}
