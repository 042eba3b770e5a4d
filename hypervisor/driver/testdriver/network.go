package testdriver

import (
	"vsh/domxml"
	"vsh/hypervisor/driver"
)

func netInfo(n *network) driver.NetworkInfo {
	def := n.cur()
	return driver.NetworkInfo{
		Name:       def.Name,
		UUID:       def.UUID,
		Active:     n.live != nil,
		Persistent: n.def != nil,
		Autostart:  n.autostart,
		Bridge:     def.Bridge.Name,
	}
}

func (h *host) findNet(ref string) (*network, error) {
	for _, n := range h.nets {
		if n.cur().Name == ref {
			return n, nil
		}
	}
	if u := normUUID(ref); u != "" {
		for _, n := range h.nets {
			if n.cur().UUID == u {
				return n, nil
			}
		}
	}
	return nil, driver.Errorf(driver.ErrNoNetwork, "no network with matching name '%s'", ref)
}

func (h *host) removeNet(n *network) {
	for i, x := range h.nets {
		if x == n {
			h.nets = append(h.nets[:i], h.nets[i+1:]...)
			return
		}
	}
}

// ListNetworks returns all networks in definition order.
func (c *Conn) ListNetworks() ([]driver.NetworkInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	out := make([]driver.NetworkInfo, 0, len(c.h.nets))
	for _, n := range c.h.nets {
		out = append(out, netInfo(n))
	}
	return out, nil
}

// LookupNetwork finds a network by name or UUID.
func (c *Conn) LookupNetwork(ref string) (driver.NetworkInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	n, err := c.h.findNet(ref)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	return netInfo(n), nil
}

// checkNetDup applies libvirt's name/UUID uniqueness rules for networks.
func (h *host) checkNetDup(def *domxml.Network, checkLive bool) (*network, error) {
	for _, n := range h.nets {
		cur := n.cur()
		if cur.UUID != def.UUID {
			continue
		}
		if cur.Name != def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "network '%s' is already defined with uuid %s", cur.Name, cur.UUID)
		}
		if checkLive && n.live != nil {
			return nil, driver.Errorf(driver.ErrOperationInvalid, "network is already active as '%s'", cur.Name)
		}
		return n, nil
	}
	for _, n := range h.nets {
		if cur := n.cur(); cur.Name == def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "network '%s' already exists with uuid %s", cur.Name, cur.UUID)
		}
	}
	return nil, nil
}

func (c *Conn) parseNet(xml []byte, file string, validate bool) (*domxml.Network, error) {
	def, err := parseNetwork(file, xml, validate)
	if err != nil {
		return nil, err
	}
	return withNetworkUUID(def, file, xml)
}

// DefineNetwork defines or redefines a persistent network.
func (c *Conn) DefineNetwork(xml []byte, file string, validate bool) (driver.NetworkInfo, error) {
	return c.putNetwork("virNetworkDefineXML", xml, file, validate, false)
}

// CreateNetwork starts a transient network.
func (c *Conn) CreateNetwork(xml []byte, file string, validate bool) (driver.NetworkInfo, error) {
	return c.putNetwork("virNetworkCreateXML", xml, file, validate, true)
}

// putNetwork parses a network and installs it as the persistent
// definition, or as the running one when live is set.
func (c *Conn) putNetwork(api string, xml []byte, file string, validate, live bool) (driver.NetworkInfo, error) {
	unlock, err := c.lock(api)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	defer unlock()
	def, err := c.parseNet(xml, file, validate)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	n, err := c.h.checkNetDup(def, live)
	if err != nil {
		return driver.NetworkInfo{}, err
	}
	if n == nil {
		n = &network{}
		c.h.nets = append(c.h.nets, n)
	}
	if live {
		n.live = def
	} else {
		n.def = def
	}
	return netInfo(n), nil
}

// UndefineNetwork removes an inactive network's definition.
func (c *Conn) UndefineNetwork(name string) error {
	unlock, err := c.lock("virNetworkUndefine")
	if err != nil {
		return err
	}
	defer unlock()
	n, err := c.h.findNet(name)
	if err != nil {
		return err
	}
	if n.live != nil {
		return driver.Errorf(driver.ErrOperationInvalid, "Network '%s' is still running", n.cur().Name)
	}
	c.h.removeNet(n)
	return nil
}

// StartNetwork activates a defined network.
func (c *Conn) StartNetwork(name string) error {
	unlock, err := c.lock("virNetworkCreate")
	if err != nil {
		return err
	}
	defer unlock()
	n, err := c.h.findNet(name)
	if err != nil {
		return err
	}
	if n.live != nil {
		return driver.Errorf(driver.ErrOperationInvalid, "Network '%s' is already running", n.cur().Name)
	}
	n.live = n.def.Clone()
	return nil
}

// DestroyNetwork deactivates a network; a transient one disappears. Like
// libvirt's test driver it accepts an inactive network.
func (c *Conn) DestroyNetwork(name string) error {
	unlock, err := c.lock("virNetworkDestroy")
	if err != nil {
		return err
	}
	defer unlock()
	n, err := c.h.findNet(name)
	if err != nil {
		return err
	}
	n.live = nil
	if n.def == nil {
		c.h.removeNet(n)
	}
	return nil
}

// NetworkXML returns the live or persistent definition.
func (c *Conn) NetworkXML(name string, inactive bool) ([]byte, error) {
	unlock, _ := c.lock("")
	defer unlock()
	n, err := c.h.findNet(name)
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
	unlock, err := c.lock("virNetworkSetAutostart")
	if err != nil {
		return err
	}
	defer unlock()
	n, err := c.h.findNet(name)
	if err != nil {
		return err
	}
	if n.def == nil {
		return driver.Errorf(driver.ErrOperationInvalid, "cannot set autostart for transient network")
	}
	n.autostart = on
	return nil
}

// NetworkLeases is not implemented by libvirt's test driver either.
func (c *Conn) NetworkLeases(name string, mac string) ([]driver.DHCPLease, error) {
	unlock, _ := c.lock("")
	defer unlock()
	if _, err := c.h.findNet(name); err != nil {
		return nil, err
	}
	return nil, driver.Errorf(driver.ErrNoSupport, "virNetworkGetDHCPLeases")
}
