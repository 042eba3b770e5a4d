package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// dirBackend is a NetworkBackend whose "host setup" is a file in the
// network's run directory, so tests can see what the driver asked for.
type dirBackend struct{ failStart bool }

func (b dirBackend) Start(n *domxml.Network, runDir string) error {
	if b.failStart {
		return errors.New("bridge setup failed")
	}
	return os.WriteFile(filepath.Join(runDir, "bridge"), []byte(n.Bridge.Name), 0o600)
}

func (dirBackend) Stop(n *domxml.Network, runDir string) error {
	return os.Remove(filepath.Join(runDir, "bridge"))
}

func (dirBackend) Leases(n *domxml.Network, runDir, mac string) ([]driver.DHCPLease, error) {
	return []driver.DHCPLease{{Expiry: time.Unix(1, 0), MAC: "52:54:00:00:00:01", Protocol: "ipv4", Address: "192.168.122.10/24"}}, nil
}

func TestNetworkBackend(t *testing.T) {
	DefaultNetworkBackend = dirBackend{}
	defer func() { DefaultNetworkBackend = nil }()
	c := openTemp(t)
	run := filepath.Join(os.Getenv("VSH_HOME"), "run", "networks")
	const n1 = "<network><name>n1</name><forward mode='nat'/><ip address='10.1.0.1' netmask='255.255.255.0'/></network>"
	info, err := c.DefineNetwork([]byte(n1), "n1.xml", false)
	mustDo(t, "define", err)
	mustDo(t, "start", c.StartNetwork("n1"))
	if b, err := os.ReadFile(filepath.Join(run, "n1", "bridge")); err != nil || string(b) != info.Bridge {
		t.Fatalf("backend not started: %q %v", b, err)
	}
	wantErr(t, "start again", c.StartNetwork("n1"), "Requested operation is not valid: network 'n1' is already active")
	wantErr(t, "undefine active", c.UndefineNetwork("n1"), "Requested operation is not valid: Network 'n1' is still running")
	leases, err := c.NetworkLeases("n1", "")
	if err != nil || len(leases) != 1 {
		t.Errorf("leases: %+v %v", leases, err)
	}
	// The running definition stays what was started, even when the
	// persistent one is redefined.
	_, err = c.DefineNetwork([]byte("<network><name>n1</name><uuid>"+info.UUID+"</uuid><bridge name='vshbr9'/></network>"), "n1.xml", false)
	mustDo(t, "redefine", err)
	if got, _ := c.LookupNetwork("n1"); got.Bridge != info.Bridge {
		t.Errorf("live bridge changed by redefine: %+v", got)
	}
	if x, _ := c.NetworkXML("n1", true); !strings.Contains(string(x), "vshbr9") {
		t.Errorf("inactive XML:\n%s", x)
	}
	mustDo(t, "destroy", c.DestroyNetwork("n1"))
	if _, err := os.Stat(filepath.Join(run, "n1")); !os.IsNotExist(err) {
		t.Errorf("run directory left: %v", err)
	}
	wantErr(t, "destroy again", c.DestroyNetwork("n1"), "Requested operation is not valid: network 'n1' is not active")

	// Transient networks exist only while active.
	_, err = c.CreateNetwork([]byte("<network><name>t1</name><forward mode='nat'/><ip address='10.9.1.1' prefix='24'/></network>"), "t1.xml", false)
	mustDo(t, "create", err)
	if got, _ := c.LookupNetwork("t1"); got.Persistent || !got.Active {
		t.Errorf("transient: %+v", got)
	}
	mustDo(t, "destroy transient", c.DestroyNetwork("t1"))
	if _, err := c.LookupNetwork("t1"); driver.Code(err) != driver.ErrNoNetwork {
		t.Errorf("transient network survived: %v", err)
	}

	// A failed start leaves nothing active behind.
	DefaultNetworkBackend = dirBackend{failStart: true}
	err = c.StartNetwork("n1")
	if err == nil || err.Error() != "bridge setup failed" {
		t.Fatalf("failed start: %v", err)
	}
	if got, _ := c.LookupNetwork("n1"); got.Active {
		t.Errorf("network active after failed start")
	}
}
