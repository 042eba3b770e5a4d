package local

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// DefaultNetworkXML is the network the system connection defines on first
// use: libvirt's default NAT network, on a bridge that does not clash with
// libvirt's virbr0.
const DefaultNetworkXML = `<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='vshbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`

// net is one network as found on disk.
type netObj struct {
	name      string
	def       *domxml.Network // persistent; nil when transient
	live      *domxml.Network // active; nil when inactive
	autostart bool
}

func (n *netObj) cur() *domxml.Network {
	if n.live != nil {
		return n.live
	}
	return n.def
}

func (c *Conn) netDefPath(name string) string { return filepath.Join(c.netDir(), name+".xml") }
func (c *Conn) netRunPath(name string) string { return filepath.Join(c.runNetDir(), name) }
func (c *Conn) netLivePath(name string) string {
	return filepath.Join(c.netRunPath(name), "live.xml")
}

// ensureDefaultNetwork defines the default network the first time the
// system connection's state is created (marked by a file, so undefining
// it sticks).
func (c *Conn) ensureDefaultNetwork() error {
	marker := filepath.Join(c.paths.State, "default-network-created")
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	l, err := c.write("virNetworkDefineXML")
	if err != nil {
		return err
	}
	defer l.unlock()
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if n, _ := c.loadNet("default"); n == nil {
		def, err := parseNetwork("(default network)", []byte(DefaultNetworkXML), false)
		if err != nil {
			return err
		}
		if err := fillNetwork(def, nil); err != nil {
			return err
		}
		if err := writeFileAtomic(c.netDefPath("default"), def.XML(), 0o600); err != nil {
			return err
		}
		if err := setMarker(c.netDir(), "default", true); err != nil {
			return err
		}
	}
	return writeFileAtomic(marker, []byte("1\n"), 0o600)
}

func (c *Conn) loadNet(name string) (*netObj, error) {
	if validName("network", name) != nil {
		return nil, nil
	}
	n := &netObj{name: name}
	read := func(path string) (*domxml.Network, error) {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, sysErr("cannot read '%s'", err, path)
		}
		def, err := domxml.ParseNetwork(path, b, false)
		if err != nil {
			return nil, driver.Errorf(driver.ErrInternal, "stored definition of network '%s' is invalid: %v", name, err)
		}
		return def, nil
	}
	var err error
	if n.def, err = read(c.netDefPath(name)); err != nil {
		return nil, err
	}
	if n.live, err = read(c.netLivePath(name)); err != nil {
		return nil, err
	}
	if n.def == nil && n.live == nil {
		return nil, nil
	}
	n.autostart = n.def != nil && hasMarker(c.netDir(), name)
	return n, nil
}

func (c *Conn) netNames() ([]string, error) {
	names, err := listXML(c.netDir())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	if ents, err := os.ReadDir(c.runNetDir()); err == nil {
		for _, e := range ents {
			if e.IsDir() && !seen[e.Name()] && !isTemp(e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	return names, nil
}

func (c *Conn) allNets() ([]*netObj, error) {
	names, err := c.netNames()
	if err != nil {
		return nil, err
	}
	var out []*netObj
	for _, name := range names {
		if n, _ := c.loadNet(name); n != nil {
			out = append(out, n)
		}
	}
	return out, nil
}

func netInfo(n *netObj) driver.NetworkInfo {
	def := n.cur()
	return driver.NetworkInfo{Name: n.name, UUID: def.UUID, Active: n.live != nil, Persistent: n.def != nil,
		Autostart: n.autostart, Bridge: def.Bridge.Name}
}

func (c *Conn) findNet(ref string) (*netObj, error) {
	if n, err := c.loadNet(ref); n != nil || err != nil {
		return n, err
	}
	if u := normUUID(ref); u != "" {
		all, err := c.allNets()
		if err != nil {
			return nil, err
		}
		for _, n := range all {
			if n.cur().UUID == u {
				return n, nil
			}
		}
	}
	return nil, driver.Errorf(driver.ErrNoNetwork, "no network with matching name '%s'", ref)
}

// ListNetworks returns all networks.
func (c *Conn) ListNetworks() ([]driver.NetworkInfo, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	all, err := c.allNets()
	if err != nil {
		return nil, err
	}
	out := make([]driver.NetworkInfo, 0, len(all))
	for _, n := range all {
		out = append(out, netInfo(n))
	}
	return out, nil
}

// LookupNetwork finds a network by name or UUID.
func (c *Conn) LookupNetwork(ref string) (driver.NetworkInfo, error) {
	l, err := c.read()
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	defer l.unlock()
	n, err := c.findNet(ref)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	return netInfo(n), nil
}

// addNet parses a network, fills its defaults (a bridge name no other
// network uses) and applies libvirt's uniqueness rules.
func (c *Conn) addNet(xml []byte, file string, validate, create bool) (*netObj, *domxml.Network, error) {
	def, err := parseNetwork(file, xml, validate)
	if err != nil {
		return nil, nil, err
	}
	if err := validName("network", def.Name); err != nil {
		return nil, nil, err
	}
	all, err := c.allNets()
	if err != nil {
		return nil, nil, err
	}
	var used []string
	for _, n := range all {
		if n.name == def.Name {
			continue
		}
		for _, d := range []*domxml.Network{n.def, n.live} {
			if d != nil && d.Bridge.Name != "" {
				used = append(used, d.Bridge.Name)
			}
		}
	}
	if err := fillNetwork(def, used); err != nil {
		return nil, nil, err
	}
	for _, n := range all {
		cur := n.cur()
		if cur.UUID == def.UUID && n.name != def.Name {
			return nil, nil, driver.Errorf(driver.ErrOperationFailed, "network '%s' is already defined with uuid %s", n.name, cur.UUID)
		}
		if n.name == def.Name {
			if cur.UUID != def.UUID {
				return nil, nil, driver.Errorf(driver.ErrOperationFailed, "network '%s' already exists with uuid %s", n.name, cur.UUID)
			}
			if create && n.live != nil {
				return nil, nil, driver.Errorf(driver.ErrOperationInvalid, "network is already active as '%s'", n.name)
			}
			return n, def, nil
		}
		if def.Bridge.Name != "" && cur.Bridge.Name == def.Bridge.Name {
			return nil, nil, driver.Errorf(driver.ErrOperationFailed, "bridge name '%s' already in use.", def.Bridge.Name)
		}
	}
	return nil, def, nil
}

// DefineNetwork defines or redefines a persistent network.
func (c *Conn) DefineNetwork(xml []byte, file string, validate bool) (driver.NetworkInfo, error) {
	l, err := c.write("virNetworkDefineXML")
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	defer l.unlock()
	cleanTemps(c.netDir())
	n, def, err := c.addNet(xml, file, validate, false)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	if err := writeFileAtomic(c.netDefPath(def.Name), def.XML(), 0o600); err != nil {
		return driver.NetworkInfo{}, err
	}
	if n == nil {
		n = &netObj{name: def.Name}
	}
	n.def = def
	return netInfo(n), nil
}

// startNet activates def through the network backend and records it.
func (c *Conn) startNet(n *netObj, def *domxml.Network) error {
	b := DefaultNetworkBackend
	if b == nil {
		return noNetworkBackend()
	}
	dir := c.netRunPath(n.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sysErr("cannot create directory '%s'", err, dir)
	}
	if err := b.Start(def, dir); err != nil {
		b.Stop(def, dir)
		os.RemoveAll(dir)
		return err
	}
	if err := writeFileAtomic(c.netLivePath(n.name), def.XML(), 0o600); err != nil {
		b.Stop(def, dir)
		os.RemoveAll(dir)
		return err
	}
	n.live = def
	return nil
}

// CreateNetwork starts a transient network.
func (c *Conn) CreateNetwork(xml []byte, file string, validate bool) (driver.NetworkInfo, error) {
	l, err := c.write("virNetworkCreateXML")
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	defer l.unlock()
	n, def, err := c.addNet(xml, file, validate, true)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	if n == nil {
		n = &netObj{name: def.Name}
	}
	if err := c.startNet(n, def); err != nil {
		return driver.NetworkInfo{}, err
	}
	return netInfo(n), nil
}

func (c *Conn) withNet(api, name string, fn func(*netObj) error) error {
	l, err := c.write(api)
	if err != nil {
		return err
	}
	defer l.unlock()
	n, err := c.findNet(name)
	if err != nil {
		return err
	}
	return fn(n)
}

// UndefineNetwork removes an inactive network's definition.
func (c *Conn) UndefineNetwork(name string) error {
	return c.withNet("virNetworkUndefine", name, func(n *netObj) error {
		if n.live != nil {
			return driver.Errorf(driver.ErrOperationInvalid, "Network '%s' is still running", n.name)
		}
		if err := setMarker(c.netDir(), n.name, false); err != nil {
			return err
		}
		return removeFile(c.netDefPath(n.name))
	})
}

// StartNetwork activates a defined network.
func (c *Conn) StartNetwork(name string) error {
	return c.withNet("virNetworkCreate", name, func(n *netObj) error {
		if n.live != nil {
			return driver.Errorf(driver.ErrOperationInvalid, "network '%s' is already active", n.name)
		}
		return c.startNet(n, n.def.Clone())
	})
}

// DestroyNetwork deactivates a network; a transient one disappears.
func (c *Conn) DestroyNetwork(name string) error {
	return c.withNet("virNetworkDestroy", name, func(n *netObj) error {
		if n.live == nil {
			return driver.Errorf(driver.ErrOperationInvalid, "network '%s' is not active", n.name)
		}
		if b := DefaultNetworkBackend; b != nil {
			if err := b.Stop(n.live, c.netRunPath(n.name)); err != nil {
				return err
			}
		}
		if err := os.RemoveAll(c.netRunPath(n.name)); err != nil {
			return sysErr("cannot remove '%s'", err, c.netRunPath(n.name))
		}
		return syncDir(c.runNetDir())
	})
}

// NetworkXML returns the live or persistent definition.
func (c *Conn) NetworkXML(name string, inactive bool) ([]byte, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	n, err := c.findNet(name)
	if err != nil {
		return nil, err
	}
	if n.live != nil && (!inactive || n.def == nil) {
		return n.live.XML(), nil
	}
	return n.def.XML(), nil
}

// SetNetworkAutostart marks a persistent network for autostart.
func (c *Conn) SetNetworkAutostart(name string, on bool) error {
	return c.withNet("virNetworkSetAutostart", name, func(n *netObj) error {
		if n.def == nil {
			return driver.Errorf(driver.ErrOperationInvalid, "cannot set autostart for transient network")
		}
		return setMarker(c.netDir(), n.name, on)
	})
}

// NetworkLeases returns an active network's DHCP leases.
func (c *Conn) NetworkLeases(name string, mac string) ([]driver.DHCPLease, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	n, err := c.findNet(name)
	if err != nil {
		return nil, err
	}
	if n.live == nil {
		return nil, driver.Errorf(driver.ErrOperationInvalid, "network '%s' is not active", n.name)
	}
	if DefaultNetworkBackend == nil {
		return nil, noNetworkBackend()
	}
	return DefaultNetworkBackend.Leases(n.live, c.netRunPath(n.name), mac)
}
