package shell

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"vsh/hypervisor/driver"
)

// virshDevices holds what `virsh -c test:///default SCRIPT` (virsh and
// libvirt 9.0) prints for the device commands: stdout, stderr and
// success. Each script runs on a fresh test host.
var virshDevices = []struct {
	script, stdout, stderr string
	ok                     bool
}{
	{`dommemstat test`, `actual 2097152
swap_in 0
swap_out 0
major_fault 0
minor_fault 0
unused 1048576
available 2097152
usable 1048576
last_update 627319920
disk_caches 262144
hugetlb_pgalloc 0
hugetlb_pgfail 0
rss 1048576

`, ``, true},
	{`domifaddr test`, ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 testnet0   aa:bb:cc:dd:ee:ff    ipv4         192.168.122.3/24

`, ``, true},
	{`domifaddr test --full --source lease`, ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 testnet0   aa:bb:cc:dd:ee:ff    ipv4         192.168.122.3/24

`, ``, true},
	{`domifaddr test --interface nope`, ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------

`, ``, true},
	{`domif-getlink test testnet0`, `testnet0 up
`, ``, true},
	{`domif-getlink test vnet0`, `
`, `error: Interface (dev: vnet0) not found.
`, false},
	{`domif-getlink test 11:22:33:44:55:66 --config`, `
`, `error: Interface (mac: 11:22:33:44:55:66) not found.
`, false},
	{`domif-setlink test testnet0 sideways`, `
`, `error: invalid link state 'sideways'
`, false},
	{`domif-setlink test vnet9 down`, `
`, `error: interface 'vnet9' not found
`, false},
	{`domif-setlink test testnet0 down`, `
`, `error: Failed to update interface link state
error: this function is not supported by the connection driver: virDomainUpdateDeviceFlags
`, false},
	{`domif-setlink test testnet0 down --print-xml`, `<interface type="network">
      <mac address="aa:bb:cc:dd:ee:ff"/>
      <source network="default"/>
      <target dev="testnet0"/>
      <address type="pci" domain="0x0000" bus="0x00" slot="0x01" function="0x0"/>
    <link state="down"/></interface>
`, ``, true},
	{`attach-interface test network default`, `
`, `error: Failed to attach interface
error: this function is not supported by the connection driver: virDomainAttachDevice
`, false},
	{`attach-interface test bridge br0 --config --mac 52:54:00:aa:bb:cc`, `
`, `error: Failed to attach interface
error: this function is not supported by the connection driver: virDomainAttachDeviceFlags
`, false},
	{`attach-interface test user default`, `
`, `error: No support for user in command 'attach-interface'
`, false},
	{`attach-interface test network default --print-xml --target vnet3 --model virtio`, `<interface type='network'>
  <source network='default'/>
  <target dev='vnet3'/>
  <model type='virtio'/>
</interface>

`, ``, true},
	{`attach-interface test network default --persistent --current`, `
`, `error: Options --persistent and --current are mutually exclusive
`, false},
	{`detach-interface test bridge`, `
`, `error: No interface found whose type is bridge
error: Failed to detach interface
`, false},
	{`detach-interface test network --mac 11:22:33:44:55:66`, `
`, `error: No interface with MAC address 11:22:33:44:55:66 was found
error: Failed to detach interface
`, false},
	{`detach-interface test network --config`, `
`, `error: Failed to detach interface
error: this function is not supported by the connection driver: virDomainDetachDeviceFlags
`, false},
	{`detach-interface test network --print-xml`, `<interface type="network">
      <mac address="aa:bb:cc:dd:ee:ff"/>
      <source network="default"/>
      <target dev="testnet0"/>
      <address type="pci" domain="0x0000" bus="0x00" slot="0x01" function="0x0"/>
    </interface>
`, ``, true},
	{`domifstat test vnet0`, `
`, `error: Failed to get interface stats test vnet0
error: invalid argument: 'vnet0' is not a known interface
`, false},
	{`destroy test; dommemstat test; domifaddr test; domifstat test testnet0`, `Domain 'test' destroyed




`, `error: Failed to get memory statistics for domain test
error: Requested operation is not valid: domain is not running
error: Failed to query for interfaces addresses
error: Requested operation is not valid: domain is not running
error: Failed to get interface stats test testnet0
error: Requested operation is not valid: domain is not running
`, false},
	{`dommemstat test --period 5 --config; dumpxml test --inactive`, `
<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/diskimage1'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='aa:bb:cc:dd:ee:ff'/>
      <source network='default'/>
      <target dev='testnet0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <stats period='5'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </memballoon>
  </devices>
</domain>

`, ``, true},
	{`dommemstat test --period -2`, `
`, `error: Invalid collection period value '-2'
`, false},
	{`domifaddr test --source bogus`, `
`, `error: Unknown data source 'bogus'
`, false},
	{`setmem test 1000000; dommemstat test`, `
actual 1000000
swap_in 0
swap_out 0
major_fault 0
minor_fault 0
unused 500000
available 1000000
usable 500000
last_update 627319920
disk_caches 125000
hugetlb_pgalloc 0
hugetlb_pgfail 0
rss 500000

`, ``, true},
}

// runTest runs a script in a new shell on test:///default and closes it,
// so the next run starts from the default test host.
func runTest(t *testing.T, conn driver.Conn, script string) (stdout, stderr string, ok bool) {
	t.Helper()
	var o, e bytes.Buffer
	s := New(Options{URI: "test:///default"})
	s.Stdout, s.Stderr = &o, &e
	if conn != nil {
		s.conn = conn
	}
	ok = s.RunLine(script)
	if conn == nil {
		s.Close()
	}
	return o.String(), e.String(), ok
}

func TestDeviceCommandsLikeVirsh(t *testing.T) {
	for _, tc := range virshDevices {
		out, errs, ok := runTest(t, nil, tc.script)
		if out != tc.stdout || errs != tc.stderr || ok != tc.ok {
			t.Errorf("%s:\nstdout %q\n  want %q\nstderr %q\n  want %q\nok %v, want %v", tc.script, out, tc.stdout, errs, tc.stderr, ok, tc.ok)
		}
	}
}

// TestDeviceTableIsVirsh checks the table against the virsh installed here
// (libvirt-clients), so it cannot drift from the oracle.
func TestDeviceTableIsVirsh(t *testing.T) {
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		t.Skip("virsh not installed: apt-get install libvirt-clients")
	}
	for _, tc := range virshDevices {
		cmd := exec.Command(virsh, "-c", "test:///default", tc.script)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if o.String() != tc.stdout || e.String() != tc.stderr || (err == nil) != tc.ok {
			t.Errorf("virsh %s:\nstdout %q\n  want %q\nstderr %q\n  want %q\nerr %v", tc.script, o.String(), tc.stdout, e.String(), tc.stderr, err)
		}
	}
}

// TestDomifstatLayout compares domifstat's layout with virsh's; the test
// driver's counters follow the clock, so digits are masked.
func TestDomifstatLayout(t *testing.T) {
	digits := regexp.MustCompile(`[0-9]+`)
	out, errs, ok := runTest(t, nil, "domifstat test testnet0; domifstat 1 aa:bb:cc:dd:ee:ff")
	want := "testnet0 rx_bytes N\ntestnet0 rx_packets N\ntestnet0 rx_errs N\ntestnet0 rx_drop N\ntestnet0 tx_bytes N\ntestnet0 tx_packets N\ntestnet0 tx_errs N\ntestnet0 tx_drop N\n\n"
	want += strings.ReplaceAll(want, "testnet0", "aa:bb:cc:dd:ee:ff")
	// Mask the counters (the interface names have no digits but testnet0).
	masked := strings.ReplaceAll(digits.ReplaceAllString(strings.ReplaceAll(out, "testnet0", "testnetX"), "N"), "testnetX", "testnet0")
	if !ok || errs != "" || masked != want {
		t.Errorf("domifstat:\n%s\nerrors %q", out, errs)
	}
	if virsh, err := exec.LookPath("virsh"); err == nil {
		b, _ := exec.Command(virsh, "-c", "test:///default", "domifstat test testnet0; domifstat 1 aa:bb:cc:dd:ee:ff").Output()
		if digits.ReplaceAllString(string(b), "N") != digits.ReplaceAllString(out, "N") {
			t.Errorf("domifstat differs from virsh:\n%s\nvirsh:\n%s", out, b)
		}
	}
}

// devicesConn is a running domain with a local-driver-like DomainDevices:
// several addresses per interface, one without any, a counter it lacks.
type devicesConn struct {
	driver.Conn
	calls []string
}

func (c *devicesConn) LookupDomain(ref string) (driver.DomainInfo, error) {
	if ref != "vm1" {
		return driver.DomainInfo{}, driver.Errorf(driver.ErrNoDomain, "no domain with matching name '%s'", ref)
	}
	return driver.DomainInfo{ID: 3, Name: "vm1", State: driver.StateRunning}, nil
}

func (c *devicesConn) DomainXML(name string, inactive bool) ([]byte, error) {
	c.calls = append(c.calls, "xml inactive="+map[bool]string{true: "yes", false: "no"}[inactive])
	return []byte(`<domain type='kvm'><name>vm1</name><devices>
  <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/><target dev='vnet0'/></interface>
  <interface type='network'><mac address='52:54:00:00:00:02'/><source network='default'/><target dev='vnet1'/><link state='down'/></interface>
</devices></domain>`), nil
}

func (c *devicesConn) DomainMemoryStats(name string) ([]driver.MemoryStat, error) {
	return []driver.MemoryStat{{Tag: "actual", Value: 524288}, {Tag: "unused", Value: 1000}, {Tag: "rss", Value: 9000}}, nil
}

func (c *devicesConn) SetMemoryStatsPeriod(name string, seconds int, scope driver.ModifyScope) error {
	return driver.Errorf(driver.ErrOperationUnsupported, "no")
}

func (c *devicesConn) InterfaceStats(name, iface string) (driver.InterfaceStats, error) {
	return driver.InterfaceStats{RxBytes: 1, RxPackets: 2, RxErrs: -1, RxDrop: 4, TxBytes: 5, TxPackets: 6, TxErrs: 7, TxDrop: -1}, nil
}

func (c *devicesConn) InterfaceAddresses(name, source string) ([]driver.InterfaceAddresses, error) {
	return []driver.InterfaceAddresses{
		{Name: "vnet0", MAC: "52:54:00:00:00:01", Addrs: []driver.IPAddress{{Type: "ipv4", Addr: "10.0.0.5", Prefix: 24}, {Type: "ipv6", Addr: "fd00::5", Prefix: 64}}},
		{Name: "vnet1", MAC: "52:54:00:00:00:02"},
	}, nil
}

func (c *devicesConn) SetInterfaceLink(name, iface string, up bool, config bool) error {
	c.calls = append(c.calls, "setlink "+iface+" "+map[bool]string{true: "up", false: "down"}[up]+" config="+map[bool]string{true: "yes", false: "no"}[config])
	return nil
}

func (c *devicesConn) AttachInterface(name string, spec driver.InterfaceSpec, scope driver.DeviceScope) error {
	c.calls = append(c.calls, "attach "+spec.Type+" "+spec.Source+" "+spec.MAC+" "+spec.Target+" "+spec.Model+" "+scopeText(scope))
	return nil
}

func (c *devicesConn) DetachInterface(name, typ, mac string, scope driver.DeviceScope) error {
	c.calls = append(c.calls, "detach "+typ+" "+mac+" "+scopeText(scope))
	return nil
}

func scopeText(s driver.DeviceScope) string {
	var out []string
	if s.Live {
		out = append(out, "live")
	}
	if s.Config {
		out = append(out, "config")
	}
	if s.Flags {
		out = append(out, "flags")
	}
	return strings.Join(out, ",")
}

func TestDeviceCommandsOutput(t *testing.T) {
	for _, tc := range []struct {
		script, stdout, stderr string
		calls                  []string
	}{
		{"dommemstat vm1", "actual 524288\nunused 1000\nrss 9000\n\n", "", nil},
		{"dommemstat vm1 --json", "{\n  \"actual\": 524288,\n  \"rss\": 9000,\n  \"unused\": 1000\n}\n\n", "", nil},
		{"domifstat vm1 vnet0", "vnet0 rx_bytes 1\nvnet0 rx_packets 2\nvnet0 rx_drop 4\nvnet0 tx_bytes 5\nvnet0 tx_packets 6\nvnet0 tx_errs 7\n\n", "", nil},
		{"domifaddr vm1", " Name       MAC address          Protocol     Address\n" + strings.Repeat("-", 79) + "\n" +
			" vnet0      52:54:00:00:00:01    ipv4         10.0.0.5/24\n" +
			" -          -                    ipv6         fd00::5/64\n" +
			" vnet1      52:54:00:00:00:02    N/A          N/A\n\n", "", nil},
		{"domifaddr vm1 --full --interface vnet0", " Name       MAC address          Protocol     Address\n" + strings.Repeat("-", 79) + "\n" +
			" vnet0      52:54:00:00:00:01    ipv4         10.0.0.5/24\n" +
			" vnet0      52:54:00:00:00:01    ipv6         fd00::5/64\n\n", "", nil},
		{"domif-getlink vm1 vnet1", "vnet1 down\n", "", []string{"xml inactive=no"}},
		{"domif-getlink vm1 52:54:00:00:00:01 --config --json", "{\n  \"interface\": \"52:54:00:00:00:01\",\n  \"state\": \"up\"\n}\n\n", "", []string{"xml inactive=yes"}},
		{"domif-setlink vm1 vnet1 up", "Device updated successfully\n\n", "", []string{"xml inactive=no", "setlink vnet1 up config=no"}},
		{"domif-setlink vm1 52:54:00:00:00:01 down --config", "Device updated successfully\n\n", "", []string{"xml inactive=yes", "setlink 52:54:00:00:00:01 down config=yes"}},
		{"attach-interface vm1 network default --mac 52:54:00:00:00:09 --target tap3 --model virtio --config", "Interface attached successfully\n\n", "", []string{"attach network default 52:54:00:00:00:09 tap3 virtio config,flags"}},
		{"attach-interface vm1 bridge br0 --persistent", "Interface attached successfully\n\n", "", []string{"attach bridge br0    live,config,flags"}},
		{"attach-interface vm1 bridge br0", "Interface attached successfully\n\n", "", []string{"attach bridge br0    "}},
		{"attach-interface vm1 bridge br0 --alias x", "\n", "error: Failed to attach interface\nerror: unsupported configuration: attach-interface --alias is not supported by vsh\n", nil},
		{"detach-interface vm1 network --mac 52-54-00-00-00-02 --current", "Interface detached successfully\n\n", "", []string{"xml inactive=no", "detach network 52:54:00:00:00:02 flags"}},
		{"detach-interface vm1 network", "\n", "error: Domain has 2 interfaces. Please specify which one to detach using --mac\nerror: Failed to detach interface\n", []string{"xml inactive=no"}},
		{"dommemstat vm1 --period 3", "\n", "error: Unable to change balloon collection period.\nerror: Operation not supported: no\n", nil},
	} {
		conn := &devicesConn{}
		out, errs, _ := runTest(t, conn, tc.script)
		if out != tc.stdout || errs != tc.stderr || strings.Join(conn.calls, "|") != strings.Join(tc.calls, "|") {
			t.Errorf("%s:\nstdout %q\n  want %q\nstderr %q\n  want %q\ncalls %q\n want %q", tc.script, out, tc.stdout, errs, tc.stderr, conn.calls, tc.calls)
		}
	}
}

func FuzzInterfaceElement(f *testing.F) {
	f.Add("<domain><devices><interface type='network'><mac address='52:54:00:00:00:01'/><target dev='vnet0'/></interface></devices></domain>", "vnet0")
	f.Add("<domain><devices><interface><mac/><target/></interface></devices></domain>", "52:54:00:00:00:01")
	f.Fuzz(func(t *testing.T, xml, ref string) {
		found, mac, err := interfaceElement([]byte(xml), ref)
		if err != nil && len(found) > 0 {
			t.Errorf("matches reported with an error: %v", err)
		}
		for _, e := range found {
			if e.Tag != "interface" {
				t.Errorf("matched <%s>", e.Tag)
			}
		}
		if mac != "" && len(mac) != 17 {
			t.Errorf("normalized MAC %q", mac)
		}
	})
}
