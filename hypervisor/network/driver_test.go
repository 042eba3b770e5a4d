package network

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"vsh/hypervisor/driver/local"
)

// TestDefaultNetworkThroughDriver runs net-start, net-dhcp-leases and
// net-destroy of the system connection's default network through the
// local driver, with this package installed as its backend, inside a
// private namespace (the default's 192.168.122.0/24 exists only there).
func TestDefaultNetworkThroughDriver(t *testing.T) {
	requireNetns(t, "nft", "dnsmasq", "busybox")
	if _, ok := local.DefaultNetworkBackend.(Backend); !ok {
		t.Fatalf("importing the package did not install its backend: %T", local.DefaultNetworkBackend)
	}
	host, guest := newNetns(t), newNetns(t)
	root := t.TempDir()
	paths := local.Paths{Config: filepath.Join(root, "etc"), State: filepath.Join(root, "lib"), Run: filepath.Join(root, "run")}
	var c *local.Conn
	if err := host.do(func() (err error) {
		// The first open defines default and autostarts it.
		c, err = local.OpenPaths("vsh:///system", paths, true, false)
		return err
	}); err != nil {
		t.Fatalf("open: %v", err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			host.do(func() error { return c.DestroyNetwork("default") })
		}
	})
	if info, err := c.LookupNetwork("default"); err != nil || !info.Active || info.Bridge != "vshbr0" {
		log, _ := os.ReadFile(filepath.Join(paths.Run, "autostart.log"))
		t.Fatalf("default network after the first open: %+v, %v\n%s", info, err, log)
	}
	host.run("ip", "link", "add", "vg0", "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(guest.pid))
	host.run("ip", "link", "set", "vg0", "master", "vshbr0", "up")
	guest.run("ip", "link", "set", "eth0", "address", "52:54:00:de:ad:01", "up")
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o700); err != nil {
		t.Fatal(err)
	}
	guest.run("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1", "-x", "hostname:vm1", "-s", script)
	leases, err := c.NetworkLeases("default", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].MAC != "52:54:00:de:ad:01" || !strings.HasPrefix(leases[0].Address, "192.168.122.") ||
		!strings.HasSuffix(leases[0].Address, "/24") || leases[0].Hostname != "vm1" {
		t.Fatalf("net-dhcp-leases default: %+v", leases)
	}
	guest.run("busybox", "ping", "-c", "1", "-W", "5", "192.168.122.1")
	if err := host.do(func() error { return c.DestroyNetwork("default") }); err != nil {
		t.Fatalf("net-destroy default: %v", err)
	}
	destroyed = true
	if _, err := host.try("ip", "link", "show", "vshbr0"); err == nil {
		t.Error("vshbr0 survived net-destroy")
	}
	if _, err := host.try("nft", "list", "table", "inet", "vsh-default"); err == nil {
		t.Error("table vsh-default survived net-destroy")
	}

	// net-start after net-destroy.
	if err := host.do(func() error { return c.StartNetwork("default") }); err != nil {
		t.Fatalf("net-start default: %v", err)
	}
	destroyed = false
	host.run("ip", "link", "show", "vshbr0")
	if err := host.do(func() error { return c.DestroyNetwork("default") }); err != nil {
		t.Fatalf("second net-destroy: %v", err)
	}
	destroyed = true
}
