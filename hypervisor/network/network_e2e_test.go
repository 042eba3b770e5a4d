package network

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vsh/domxml"
)

const natXML = `<network>
  <name>testnat</name>
  <forward mode='nat'/>
  <bridge name='vshbr7' stp='on' delay='0'/>
  <mac address='52:54:00:aa:bb:cc'/>
  <domain name='vsh.test'/>
  <dns>
    <host ip='192.168.150.77'><hostname>web</hostname><hostname>www.vsh.test</hostname></host>
  </dns>
  <ip address='192.168.150.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.150.100' end='192.168.150.120'/>
      <host mac='52:54:00:00:00:42' name='fixed' ip='192.168.150.42'/>
    </dhcp>
  </ip>
</network>`

// udhcpcScript configures the interface udhcpc got a lease for.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface" 2>/dev/null; break; done
	;;
esac
exit 0
`

func parseNet(t *testing.T, xml string) *domxml.Network {
	t.Helper()
	n, err := domxml.ParseNetwork("test.xml", []byte(xml), false)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNATNetwork starts a NAT network in a private "host" namespace, puts
// two veths in a "guest" namespace on its bridge, gets DHCP leases with
// busybox udhcpc, resolves a <dns><host> name through dnsmasq, and
// reaches a TCP echo server in an "outside" namespace through the NAT.
func TestNATNetwork(t *testing.T) {
	requireNetns(t, "nft", "dnsmasq", "busybox")
	host, guest, outside := newNetns(t), newNetns(t), newNetns(t)

	// Bystanders Stop must leave alone.
	host.run("ip", "link", "add", "other0", "type", "bridge")
	host.run("nft", "add", "table", "ip", "bystander")

	// The outside world: 10.200.0.0/24 between host and outside.
	host.run("ip", "link", "add", "vo0", "type", "veth", "peer", "name", "eth0", "netns", fmt.Sprint(outside.pid))
	host.run("ip", "addr", "add", "10.200.0.1/24", "dev", "vo0")
	host.run("ip", "link", "set", "vo0", "up")
	outside.run("ip", "addr", "add", "10.200.0.2/24", "dev", "eth0")
	outside.run("ip", "link", "set", "eth0", "up")

	n := parseNet(t, natXML)
	runDir := filepath.Join(t.TempDir(), "testnat")
	var b Backend
	if err := host.do(func() error { return b.Start(n, runDir) }); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			host.do(func() error { return b.Stop(n, runDir) })
		}
	})

	if pid, err := dnsmasqPID(runDir); err != nil {
		t.Errorf("dnsmasq pid: %v", err)
	} else if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); strings.Contains(string(st), "\nUid:\t0\t") {
		t.Errorf("dnsmasq %d runs as root", pid)
	}

	rules := host.run("nft", "list", "table", "inet", "vsh-testnat")
	for _, want := range []string{"masquerade", `iifname "vshbr7"`, "192.168.150.0/24"} {
		if !strings.Contains(rules, want) {
			t.Errorf("nft table lacks %q:\n%s", want, rules)
		}
	}
	if fwd := host.run("cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(fwd) != "1" {
		t.Errorf("ip_forward %q in the host namespace", fwd)
	}
	if link := host.run("ip", "link", "show", "vshbr7"); !strings.Contains(link, "52:54:00:aa:bb:cc") {
		t.Errorf("bridge MAC not from the XML:\n%s", link)
	}

	// The guest: eth0 with a MAC from the range, eth1 the static host.
	for i, mac := range []string{"52:54:00:12:34:56", "52:54:00:00:00:42"} {
		hostSide := fmt.Sprintf("vg%d", i)
		host.run("ip", "link", "add", hostSide, "type", "veth", "peer", "name", fmt.Sprintf("eth%d", i), "netns", fmt.Sprint(guest.pid))
		host.run("ip", "link", "set", hostSide, "master", "vshbr7", "up")
		guest.run("ip", "link", "set", fmt.Sprintf("eth%d", i), "address", mac, "up")
	}
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o700); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"guest1", "guest2"} {
		guest.run("busybox", "udhcpc", "-i", fmt.Sprintf("eth%d", i), "-f", "-q", "-n", "-t", "10", "-T", "1", "-x", "hostname:"+name, "-s", script)
	}
	addrs := guest.run("ip", "-4", "addr")
	if !strings.Contains(addrs, "192.168.150.42/24") {
		t.Errorf("static DHCP host did not get 192.168.150.42:\n%s", addrs)
	}

	leases, err := b.Leases(n, runDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 2 {
		t.Fatalf("leases %+v, want 2", leases)
	}
	mine, err := b.Leases(n, runDir, "52:54:00:12:34:56")
	if err != nil || len(mine) != 1 {
		t.Fatalf("leases for one MAC: %+v, %v", mine, err)
	}
	l := mine[0]
	ip, _, _ := strings.Cut(l.Address, "/")
	if a := net.ParseIP(ip).To4(); a == nil || a[3] < 100 || a[3] > 120 || !strings.HasSuffix(l.Address, "/24") {
		t.Errorf("lease address %s not in the range", l.Address)
	}
	if l.Protocol != "ipv4" || l.Hostname != "guest1" || l.Expiry.Before(time.Now()) || l.ClientID == "" {
		t.Errorf("lease %+v", l)
	}
	if !strings.Contains(addrs, l.Address) {
		t.Errorf("lease %s is not the guest's address:\n%s", l.Address, addrs)
	}

	// DNS for a <dns><host>.
	for _, name := range []string{"web", "www.vsh.test"} {
		out := guest.run("busybox", "nslookup", name, "192.168.150.1")
		if !strings.Contains(out, "192.168.150.77") {
			t.Errorf("nslookup %s:\n%s", name, out)
		}
	}

	// NAT: the outside server sees the host's outside address.
	var ln net.Listener
	if err := outside.do(func() (err error) {
		ln, err = net.Listen("tcp4", "10.200.0.2:7777")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "%s from %s\n", strings.TrimSpace(line), c.RemoteAddr().(*net.TCPAddr).IP)
	}()
	var reply string
	if err := guest.do(func() error {
		c, err := net.DialTimeout("tcp4", "10.200.0.2:7777", 20*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "hello\n")
		reply, err = bufio.NewReader(c).ReadString('\n')
		return err
	}); err != nil {
		t.Fatalf("guest to outside through NAT: %v", err)
	}
	if reply != "hello from 10.200.0.1\n" {
		t.Errorf("echo reply %q, want the NAT address 10.200.0.1", reply)
	}

	// Stop removes the bridge, the table and dnsmasq, and nothing else.
	pid, err := dnsmasqPID(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.do(func() error { return b.Stop(n, runDir) }); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	if _, err := host.try("ip", "link", "show", "vshbr7"); err == nil {
		t.Error("bridge vshbr7 still exists")
	}
	if _, err := host.try("nft", "list", "table", "inet", "vsh-testnat"); err == nil {
		t.Error("table vsh-testnat still exists")
	}
	if unix.Kill(pid, 0) == nil && !isZombie(pid) {
		t.Errorf("dnsmasq %d still runs", pid)
	}
	host.run("ip", "link", "show", "other0")
	host.run("ip", "link", "show", "vg0") // the guest's port, not the network's
	host.run("nft", "list", "table", "ip", "bystander")
	// Stopping twice is harmless.
	if err := host.do(func() error { return b.Stop(n, runDir) }); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartRollsBack makes dnsmasq fail after the bridge and rules exist.
func TestStartRollsBack(t *testing.T) {
	requireNetns(t, "nft")
	host := newNetns(t)
	bin := t.TempDir()
	fake := "#!/bin/sh\necho 'dnsmasq: failed to create listening socket: Address in use' >&2\nexit 2\n"
	if err := os.WriteFile(filepath.Join(bin, "dnsmasq"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	n := parseNet(t, natXML)
	runDir := filepath.Join(t.TempDir(), "testnat")
	err := host.do(func() error { return Backend{}.Start(n, runDir) })
	if err == nil || !strings.Contains(err.Error(), "Address in use") {
		t.Fatalf("Start with a failing dnsmasq: %v", err)
	}
	if _, err := host.try("ip", "link", "show", "vshbr7"); err == nil {
		t.Error("bridge left behind by a failed start")
	}
	if _, err := host.try("nft", "list", "table", "inet", "vsh-testnat"); err == nil {
		t.Error("nft table left behind by a failed start")
	}

	// A bridge that exists already is not the network's: refused, kept.
	host.run("ip", "link", "add", "vshbr7", "type", "bridge")
	err = host.do(func() error { return Backend{}.Start(n, runDir) })
	if err == nil || !strings.Contains(err.Error(), "bridge vshbr7 already exists") {
		t.Fatalf("Start on an existing bridge: %v", err)
	}
	host.run("ip", "link", "show", "vshbr7")
}

// TestIsolatedAndRouted checks the rules of the other managed modes and
// the host-bridge mode.
func TestIsolatedAndRouted(t *testing.T) {
	requireNetns(t, "nft", "dnsmasq")
	host := newNetns(t)
	for _, c := range []struct {
		xml      string
		table    string
		want     []string
		dontWant []string
	}{
		{`<network><name>iso</name><bridge name='vshbr8'/><ip address='10.9.0.1' prefix='24'/></network>`,
			"vsh-iso", []string{`iifname "vshbr8" reject`}, []string{"masquerade", "ip saddr"}},
		{`<network><name>rt</name><forward mode='route'/><bridge name='vshbr9'/><ip address='10.9.1.1' prefix='24'><dhcp><range start='10.9.1.10' end='10.9.1.20'/></dhcp></ip><ip family='ipv6' address='fd00:9::1' prefix='64'><dhcp><range start='fd00:9::100' end='fd00:9::1ff'/></dhcp></ip></network>`,
			"vsh-rt", []string{"ip daddr 10.9.1.0/24 accept", "ip saddr 10.9.1.0/24 accept", "ip6 saddr fd00:9::/64 accept"}, []string{"masquerade"}},
	} {
		n := parseNet(t, c.xml)
		runDir := filepath.Join(t.TempDir(), n.Name)
		if err := host.do(func() error { return Backend{}.Start(n, runDir) }); err != nil {
			t.Fatalf("%s: Start: %v", n.Name, err)
		}
		rules := host.run("nft", "list", "table", "inet", c.table)
		for _, w := range c.want {
			if !strings.Contains(rules, w) {
				t.Errorf("%s: rules lack %q:\n%s", n.Name, w, rules)
			}
		}
		for _, w := range c.dontWant {
			if strings.Contains(rules, w) {
				t.Errorf("%s: rules have %q:\n%s", n.Name, w, rules)
			}
		}
		if err := host.do(func() error { return Backend{}.Stop(n, runDir) }); err != nil {
			t.Fatalf("%s: Stop: %v", n.Name, err)
		}
	}

	// forward mode='bridge' uses an existing bridge and creates nothing.
	host.run("ip", "link", "add", "hostbr", "type", "bridge")
	n := parseNet(t, `<network><name>hb</name><forward mode='bridge'/><bridge name='hostbr'/></network>`)
	runDir := filepath.Join(t.TempDir(), "hb")
	if err := host.do(func() error { return Backend{}.Start(n, runDir) }); err != nil {
		t.Fatalf("bridge mode: %v", err)
	}
	if err := host.do(func() error { return Backend{}.Stop(n, runDir) }); err != nil {
		t.Fatal(err)
	}
	host.run("ip", "link", "show", "hostbr")
	missing := parseNet(t, `<network><name>hb2</name><forward mode='bridge'/><bridge name='nosuchbr'/></network>`)
	if err := host.do(func() error { return Backend{}.Start(missing, t.TempDir()) }); err == nil {
		t.Error("bridge mode on a missing bridge started")
	}
}

// TestNeedsNetAdmin drops CAP_NET_ADMIN on the thread that starts the
// network.
func TestNeedsNetAdmin(t *testing.T) {
	requireNetns(t, "nft", "dnsmasq")
	host := newNetns(t)
	n := parseNet(t, natXML)
	err := host.do(func() error {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return err
		}
		data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return err
		}
		return Backend{}.Start(n, filepath.Join(t.TempDir(), "x"))
	})
	want := "network 'testnat': creating bridge vshbr7 needs root (CAP_NET_ADMIN)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start without CAP_NET_ADMIN: %v, want %q", err, want)
	}
}

// TestTapOnBridge sends an ARP request for the bridge's address through a
// tap opened with a vnet header and reads the kernel's reply from it.
func TestTapOnBridge(t *testing.T) {
	requireNetns(t)
	host := newNetns(t)
	host.run("ip", "link", "add", "br0", "type", "bridge")
	host.run("ip", "addr", "add", "10.7.0.1/24", "dev", "br0")
	host.run("ip", "link", "set", "br0", "up")
	guestMAC := net.HardwareAddr{0x52, 0x54, 0, 0xab, 0xcd, 0xef}
	var tap *Tap
	if err := host.do(func() (err error) {
		tap, err = OpenNIC("", guestMAC, "br0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tap.Name(), "vnet") {
		t.Errorf("tap name %q", tap.Name())
	}
	link := host.run("ip", "link", "show", tap.Name())
	if !strings.Contains(link, "master br0") || !strings.Contains(link, "fe:54:00:ab:cd:ef") {
		t.Errorf("tap not on br0 with the host-side MAC:\n%s", link)
	}
	if err := tap.SetOffload(unix.TUN_F_CSUM | unix.TUN_F_TSO4); err != nil {
		t.Error(err)
	}

	arp := make([]byte, VnetHdrSize, VnetHdrSize+42)
	arp = append(arp, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	arp = append(arp, guestMAC...)
	arp = append(arp, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	arp = append(arp, guestMAC...)
	arp = append(arp, 10, 7, 0, 50)
	arp = append(arp, 0, 0, 0, 0, 0, 0, 10, 7, 0, 1)
	if _, err := tap.Write(arp); err != nil {
		t.Fatalf("tap write: %v", err)
	}
	buf := make([]byte, 65536)
	tap.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatalf("no ARP reply on the tap: %v", err)
		}
		f := buf[VnetHdrSize:n]
		if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 &&
			net.IP(f[28:32]).Equal(net.IPv4(10, 7, 0, 1)) && net.HardwareAddr(f[0:6]).String() == guestMAC.String() {
			break
		}
	}
	// Reads stop at the deadline.
	tap.SetReadDeadline(time.Now())
	if _, err := tap.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	name := tap.Name()
	tap.Close()
	if err := host.do(func() error {
		_, err := netlink.LinkByName(name)
		return err
	}); err == nil {
		t.Errorf("tap %s outlived Close", name)
	}
}

// TestStartAfterCrash starts a network over the run directory of a run
// that was never stopped (a crashed host process): the leftovers it
// recorded are removed first, so the start succeeds.
func TestStartAfterCrash(t *testing.T) {
	requireNetns(t, "nft", "dnsmasq")
	host := newNetns(t)
	n := parseNet(t, natXML)
	runDir := filepath.Join(t.TempDir(), "testnat")
	var b Backend
	if err := host.do(func() error { return b.Start(n, runDir) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.do(func() error { return b.Stop(n, runDir) }) })
	old, err := dnsmasqPID(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.do(func() error { return b.Start(n, runDir) }); err != nil {
		t.Fatalf("start over leftovers: %v", err)
	}
	pid, err := dnsmasqPID(runDir)
	if err != nil || pid == old {
		t.Fatalf("dnsmasq after restart: pid %d (old %d), %v", pid, old, err)
	}
	if unix.Kill(old, 0) == nil && !isZombie(old) {
		t.Errorf("the crashed run's dnsmasq %d still runs", old)
	}
	host.run("ip", "link", "show", "vshbr7")
	host.run("nft", "list", "table", "inet", "vsh-testnat")
}
