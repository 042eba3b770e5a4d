package network

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vsh/domxml"
)

func TestTableName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"default", "vsh-default"},
		{"my-net_1.2", "vsh-my-net_1.2"},
	} {
		if got := TableName(c.in); got != c.want {
			t.Errorf("TableName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	a, b := TableName("a b"), TableName("a!b")
	if a == b || !strings.HasPrefix(a, "vsh-a_b-") || strings.ContainsAny(a, " !") {
		t.Errorf("unsafe names map to %q and %q", a, b)
	}
}

func TestRulesetRender(t *testing.T) {
	_, sub, _ := net.ParseCIDR("192.168.122.0/24")
	_, sub6, _ := net.ParseCIDR("fd00:1::/64")
	for _, c := range []struct {
		name     string
		r        ruleset
		want     []string
		dontWant []string
	}{
		{"nat", ruleset{table: "vsh-default", mode: "nat", bridge: "vshbr0", subnets: []*net.IPNet{sub}},
			[]string{
				"table inet vsh-default\ndelete table inet vsh-default\n",
				`iifname "vshbr0" ip saddr 192.168.122.0/24 accept`,
				`oifname "vshbr0" ip daddr 192.168.122.0/24 ct state related,established accept`,
				"ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade",
				"type nat hook postrouting priority srcnat",
				`iifname "vshbr0" reject`,
			}, nil},
		{"nat through a device", ruleset{table: "t", mode: "nat", bridge: "vshbr0", subnets: []*net.IPNet{sub}, dev: "eth1"},
			[]string{`ip daddr != 192.168.122.0/24 oifname "eth1" masquerade`, `iifname "vshbr0" oifname "eth1" ip saddr`}, nil},
		{"route", ruleset{table: "t", mode: "route", bridge: "vshbr0", subnets: []*net.IPNet{sub}},
			[]string{`oifname "vshbr0" ip daddr 192.168.122.0/24 accept`}, []string{"masquerade", "ct state"}},
		{"nat with IPv6 routed", ruleset{table: "t", mode: "nat", bridge: "vshbr0", subnets: []*net.IPNet{sub, sub6}},
			[]string{"ip6 saddr fd00:1::/64 accept", `oifname "vshbr0" ip6 daddr fd00:1::/64 accept`, "ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade"},
			[]string{"ip6 saddr fd00:1::/64 ip6 daddr", "ip6 daddr fd00:1::/64 ct state"}},
		{"isolated", ruleset{table: "t", bridge: "vshbr0", subnets: []*net.IPNet{sub}},
			[]string{`iifname "vshbr0" oifname "vshbr0" accept`, `oifname "vshbr0" reject`}, []string{"masquerade", "ip saddr"}},
	} {
		got := c.r.render()
		checkRuleset(t, c.name, got)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: ruleset lacks %q:\n%s", c.name, w, got)
			}
		}
		for _, w := range c.dontWant {
			if strings.Contains(got, w) {
				t.Errorf("%s: ruleset has %q:\n%s", c.name, w, got)
			}
		}
	}
}

func TestDnsmasqConfig(t *testing.T) {
	n, err := domxml.ParseNetwork("t.xml", []byte(natXML), false)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := dnsmasqConfig(n, "vshbr7", "/run/vsh/networks/testnat")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"interface=vshbr7\n", "bind-interfaces\n", "except-interface=lo\n",
		"dhcp-range=192.168.150.100,192.168.150.120,255.255.255.0\n",
		"dhcp-lease-max=21\n",
		"dhcp-leasefile=/run/vsh/networks/testnat/dnsmasq.leases\n",
		"pid-file=/run/vsh/networks/testnat/dnsmasq.pid\n",
		"domain=vsh.test\n", "local=/vsh.test/\n",
		"dhcp-host=52:54:00:00:00:42,192.168.150.42,fixed\n",
		"host-record=web,www.vsh.test,192.168.150.77\n",
	} {
		if !strings.Contains(conf, w) {
			t.Errorf("dnsmasq.conf lacks %q:\n%s", w, conf)
		}
	}
	if strings.Contains(conf, "no-resolv") {
		t.Errorf("no-resolv without forwarders")
	}
	if strings.Contains(conf, "user=") {
		t.Errorf("dnsmasq must drop to its default unprivileged user")
	}

	for _, bad := range []string{
		`<network><name>b</name><ip address='10.0.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' name='a&#10;user=root' ip='10.0.0.5'/></dhcp></ip></network>`,
		`<network><name>b</name><ip address='10.0.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' ip='10.0.9.5'/></dhcp></ip></network>`,
		`<network><name>b</name><domain name='x&#10;conf-file=/etc/passwd'/><ip address='10.0.0.1' prefix='24'/></network>`,
		`<network><name>b</name><dns><host ip='10.0.0.7'><hostname>a,b</hostname></host></dns><ip address='10.0.0.1' prefix='24'/></network>`,
		`<network><name>b</name><dns><host ip='10.0.0.300'><hostname>x</hostname></host></dns><ip address='10.0.0.1' prefix='24'/></network>`,
	} {
		n, err := domxml.ParseNetwork("b.xml", []byte(bad), false)
		if err != nil {
			t.Fatalf("parse %s: %v", bad, err)
		}
		if _, err := dnsmasqConfig(n, "br", "/tmp"); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	fw, err := domxml.ParseNetwork("f.xml", []byte(`<network><name>f</name><dns><forwarder addr='10.0.0.53'/></dns><ip address='10.0.0.1' prefix='24'/></network>`), false)
	if err != nil {
		t.Fatal(err)
	}
	conf, err = dnsmasqConfig(fw, "br", "/tmp")
	if err != nil || !strings.Contains(conf, "no-resolv\nserver=10.0.0.53\n") || strings.Contains(conf, "dhcp-range") {
		t.Errorf("forwarder config %v:\n%s", err, conf)
	}
}

func TestParseLeases(t *testing.T) {
	const file = `1764100000 52:54:00:12:34:56 192.168.122.10 guest1 01:52:54:00:12:34:56
0 52:54:00:AB:CD:EF 192.168.122.11 * *
duid 00:01:00:01:2c:b5:41:3b:52:54:00:aa:bb:cc
1764100001 12345678 fd00::10 guest6 00:04:aa
`
	prefix := func(ip net.IP) int {
		if ip.To4() != nil {
			return 24
		}
		return 64
	}
	got, err := parseLeases(strings.NewReader(file), prefix, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d leases", len(got))
	}
	if l := got[0]; l.MAC != "52:54:00:12:34:56" || l.Address != "192.168.122.10/24" || l.Hostname != "guest1" ||
		l.ClientID != "01:52:54:00:12:34:56" || !l.Expiry.Equal(time.Unix(1764100000, 0)) || l.Protocol != "ipv4" {
		t.Errorf("lease 0 %+v", l)
	}
	if l := got[1]; l.MAC != "52:54:00:ab:cd:ef" || l.Hostname != "" || l.ClientID != "" || !l.Expiry.IsZero() {
		t.Errorf("lease 1 %+v", l)
	}
	if l := got[2]; l.Protocol != "ipv6" || l.Address != "fd00::10/64" || l.Hostname != "guest6" {
		t.Errorf("lease 2 %+v", l)
	}
	one, err := parseLeases(strings.NewReader(file), prefix, "52:54:00:ab:cd:ef")
	if err != nil || len(one) != 1 || one[0].Address != "192.168.122.11/24" {
		t.Errorf("filtered by MAC: %+v, %v", one, err)
	}
	for _, bad := range []string{"x 52:54:00:12:34:56 1.2.3.4 h", "1 nomac 1.2.3.4 h", "1 52:54:00:12:34:56 notanip h", "1 2 3"} {
		if _, err := parseLeases(strings.NewReader(bad), prefix, ""); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzParseLeases feeds arbitrary lease files to the parser.
func FuzzParseLeases(f *testing.F) {
	f.Add("1764100000 52:54:00:12:34:56 192.168.122.10 guest1 01:52\n")
	f.Add("duid 00:01\n1 2 fd00::1 * *\n")
	f.Add("0 52:54:00:ab:cd:ef 10.0.0.1 *\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		leases, err := parseLeases(strings.NewReader(s), func(net.IP) int { return 24 }, "")
		if err != nil {
			return
		}
		for _, l := range leases {
			if l.Protocol != "ipv4" && l.Protocol != "ipv6" || !strings.HasSuffix(l.Address, "/24") {
				t.Fatalf("lease %+v", l)
			}
		}
	})
}

func TestValidIfName(t *testing.T) {
	for s, want := range map[string]bool{
		"vshbr0": true, "br-lan.1": true, "": false, "a b": false, `x"y`: false,
		"0123456789abcdef": false, "0123456789abcde": true, "..": false,
	} {
		if got := validIfName(s); got != want {
			t.Errorf("validIfName(%q) = %v", s, got)
		}
	}
}

// checkRuleset has nft check a ruleset (-c: validated by the kernel,
// never committed) in a namespace of its own, when root and nft are
// available; string checks alone would not catch a syntax nft refuses.
func checkRuleset(t *testing.T, name, rules string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	nft, err := nftPath()
	if err != nil {
		return
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return
	}
	file := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unshare", "--net", nft, "-c", "-f", file).CombinedOutput(); err != nil {
		t.Errorf("%s: nft refuses the ruleset: %v\n%s\n%s", name, err, out, rules)
	}
}
