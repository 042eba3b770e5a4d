package local

import (
	"bufio"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"vsh/domxml"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/testdriver"
)

// DeviceEngine is implemented by engines that reach a running domain's
// devices: the memory balloon and the network interfaces. With it the
// local driver implements driver.DomainDevices and live setmem.
type DeviceEngine interface {
	// SetMemory sets the balloon target of a running domain.
	SetMemory(name, runDir string, kib uint64) error
	// MemoryStats returns fresh memory statistics in dommemstat's order.
	MemoryStats(name, runDir string) ([]driver.MemoryStat, error)
	// Interfaces lists the running domain's network interfaces.
	Interfaces(name, runDir string) ([]EngineNIC, error)
	// SetLink sets the link state of the interface with that MAC address.
	SetLink(name, runDir, mac string, up bool) error
}

// EngineNIC is one network interface of a running domain.
type EngineNIC struct {
	MAC    string
	Tap    string // the host device (domifstat's and domifaddr's name)
	LinkUp bool
	Stats  driver.InterfaceStats
}

var _ driver.DomainDevices = (*Conn)(nil)

// deviceEngine returns the engine's device access, or the error libvirt
// gives for an API the driver lacks.
func deviceEngine(api string) (DeviceEngine, error) {
	if DefaultEngine == nil {
		return nil, noEngine()
	}
	de, ok := DefaultEngine.(DeviceEngine)
	if !ok {
		return nil, driver.Errorf(driver.ErrNoSupport, "%s", api)
	}
	return de, nil
}

// running resolves a domain under the shared lock and checks that it runs.
func (c *Conn) running(name string) (*dom, func(), error) {
	l, err := c.read()
	if err != nil {
		return nil, nil, err
	}
	d, err := c.resolve(name)
	if err != nil {
		l.unlock()
		return nil, nil, err
	}
	if !d.active() {
		l.unlock()
		return nil, nil, notRunning()
	}
	return d, l.unlock, nil
}

// recordTaps writes the tap each interface got into the running
// definition, as libvirt does (<target dev='vnet0'/>), so domiflist and
// domifstat show the names the host uses. It is best effort: a domain
// whose engine cannot say keeps its definition as it was.
func (c *Conn) recordTaps(name string, live *domxml.Domain) {
	de, ok := DefaultEngine.(DeviceEngine)
	if !ok || len(live.Devices.Interfaces) == 0 {
		return
	}
	nics, err := de.Interfaces(name, c.runPath(name))
	if err != nil {
		return
	}
	changed := false
	for _, n := range nics {
		for _, i := range live.Devices.Interfaces {
			if sameMAC(i.MAC, n.MAC) && i.TargetDev != n.Tap && n.Tap != "" {
				if live.SetInterfaceTarget(i.MAC, n.Tap) == nil {
					changed = true
				}
			}
		}
	}
	if changed {
		writeFileAtomic(c.livePath(name), live.XML(), 0o600)
	}
}

// DomainMemoryStats asks the running domain's balloon for its statistics.
func (c *Conn) DomainMemoryStats(name string) ([]driver.MemoryStat, error) {
	d, unlock, err := c.running(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	de, err := deviceEngine("virDomainMemoryStats")
	if err != nil {
		return nil, err
	}
	return de.MemoryStats(d.name, c.runPath(d.name))
}

// SetMemoryStatsPeriod sets the balloon's statistics period in the
// configuration; the engine fixes the period when a domain starts, so a
// running domain refuses the change.
func (c *Conn) SetMemoryStatsPeriod(name string, seconds int, scope driver.ModifyScope) error {
	return c.withDom("virDomainSetMemoryStatsPeriod", name, func(d *dom) error {
		live, config, err := d.defs(scope)
		if err != nil {
			return err
		}
		if live != nil {
			return driver.Errorf(driver.ErrOperationUnsupported, "the vsh engine cannot change the balloon statistics period of a running domain; use --config")
		}
		if err := testdriver.SetStatsPeriod(nonNil(config), seconds); err != nil {
			return err
		}
		return c.save(d, nil, config)
	})
}

// sameMAC compares MAC addresses whatever their case.
func sameMAC(a, b string) bool {
	x, err1 := net.ParseMAC(a)
	y, err2 := net.ParseMAC(b)
	return err1 == nil && err2 == nil && x.String() == y.String()
}

// findNIC picks the interface whose tap, target device or MAC is iface.
func findNIC(nics []EngineNIC, live *domxml.Domain, iface string) (EngineNIC, bool) {
	for _, n := range nics {
		if n.Tap == iface || sameMAC(n.MAC, iface) {
			return n, true
		}
	}
	if live != nil {
		for _, i := range live.Devices.Interfaces {
			if i.TargetDev != "" && i.TargetDev == iface {
				for _, n := range nics {
					if sameMAC(n.MAC, i.MAC) {
						return n, true
					}
				}
			}
		}
	}
	return EngineNIC{}, false
}

// InterfaceStats returns the counters of a running domain's interface.
func (c *Conn) InterfaceStats(name, iface string) (driver.InterfaceStats, error) {
	d, unlock, err := c.running(name)
	if err != nil {
		return driver.InterfaceStats{}, err
	}
	defer unlock()
	de, err := deviceEngine("virDomainInterfaceStats")
	if err != nil {
		return driver.InterfaceStats{}, err
	}
	nics, err := de.Interfaces(d.name, c.runPath(d.name))
	if err != nil {
		return driver.InterfaceStats{}, err
	}
	n, ok := findNIC(nics, d.live, iface)
	if !ok {
		return driver.InterfaceStats{}, driver.Errorf(driver.ErrInvalidArg, "'%s' is not a known interface", iface)
	}
	return n.Stats, nil
}

// InterfaceAddresses returns the addresses of a running domain's
// interfaces: from the DHCP leases of their networks (lease) or the
// host's ARP table (arp). There is no guest agent (agent).
func (c *Conn) InterfaceAddresses(name, source string) ([]driver.InterfaceAddresses, error) {
	d, unlock, err := c.running(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var nics []EngineNIC
	if de, ok := DefaultEngine.(DeviceEngine); ok {
		if nics, err = de.Interfaces(d.name, c.runPath(d.name)); err != nil {
			return nil, err
		}
	}
	ifname := func(i domxml.Interface) string {
		for _, n := range nics {
			if sameMAC(n.MAC, i.MAC) {
				return n.Tap
			}
		}
		return i.TargetDev
	}
	var out []driver.InterfaceAddresses
	switch source {
	case "", driver.AddrSourceLease:
		for _, i := range d.live.Devices.Interfaces {
			if i.Type != "network" {
				continue
			}
			n, err := c.findNet(i.SourceNetwork)
			if err != nil || n.live == nil {
				continue // libvirt skips interfaces whose network is gone
			}
			if DefaultNetworkBackend == nil {
				return nil, noNetworkBackend()
			}
			leases, err := DefaultNetworkBackend.Leases(n.live, c.netRunPath(n.name), i.MAC)
			if err != nil {
				return nil, err
			}
			ia := driver.InterfaceAddresses{Name: ifname(i), MAC: i.MAC}
			for _, l := range leases {
				ia.Addrs = append(ia.Addrs, leaseAddress(l))
			}
			if len(ia.Addrs) > 0 {
				out = append(out, ia)
			}
		}
	case driver.AddrSourceARP:
		table, err := readARP("/proc/net/arp")
		if err != nil {
			return nil, driver.Errorf(driver.ErrSystem, "cannot read the ARP table: %v", err)
		}
		for _, i := range d.live.Devices.Interfaces {
			ia := driver.InterfaceAddresses{Name: ifname(i), MAC: i.MAC}
			for _, e := range table {
				if sameMAC(e.mac, i.MAC) {
					ia.Addrs = append(ia.Addrs, driver.IPAddress{Type: "ipv4", Addr: e.ip})
				}
			}
			if len(ia.Addrs) > 0 {
				out = append(out, ia)
			}
		}
	case driver.AddrSourceAgent:
		return nil, driver.Errorf(driver.ErrAgentUnresponsive, "the vsh engine has no guest agent channel")
	default:
		return nil, driver.Errorf(driver.ErrInvalidArg, "Unknown IP address data source %s", source)
	}
	return out, nil
}

// leaseAddress splits a lease's "addr/prefix".
func leaseAddress(l driver.DHCPLease) driver.IPAddress {
	a := driver.IPAddress{Type: l.Protocol, Addr: l.Address}
	if i := strings.IndexByte(l.Address, '/'); i >= 0 {
		a.Addr = l.Address[:i]
		a.Prefix, _ = strconv.Atoi(l.Address[i+1:])
	}
	if a.Type == "" {
		a.Type = "ipv4"
		if strings.Contains(a.Addr, ":") {
			a.Type = "ipv6"
		}
	}
	return a
}

type arpEntry struct{ ip, mac string }

// readARP reads the kernel's IPv4 neighbour table (complete entries only).
func readARP(path string) ([]arpEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseARP(f)
}

// parseARP parses /proc/net/arp's format:
// IP address, HW type, Flags, HW address, Mask, Device.
func parseARP(r io.Reader) ([]arpEntry, error) {
	var out []arpEntry
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[2] == "0x0" || net.ParseIP(f[0]) == nil {
			continue
		}
		if _, err := net.ParseMAC(f[3]); err != nil {
			continue
		}
		out = append(out, arpEntry{ip: f[0], mac: f[3]})
	}
	return out, sc.Err()
}

// SetInterfaceLink sets an interface's link state: through the engine on
// a running domain, in the persistent definition with config (or when the
// domain is not running), as virsh domif-setlink does.
func (c *Conn) SetInterfaceLink(name, iface string, up bool, config bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return c.withDom("virDomainUpdateDeviceFlags", name, func(d *dom) error {
		if config || !d.active() {
			if d.def == nil {
				return driver.Errorf(driver.ErrOperationInvalid, "transient domains do not have any persistent config")
			}
			if err := d.def.SetInterfaceLinkState(iface, state); err != nil {
				return driver.Errorf(driver.ErrOperationFailed, "%v", err)
			}
			return c.save(d, nil, d.def)
		}
		de, err := deviceEngine("virDomainUpdateDeviceFlags")
		if err != nil {
			return err
		}
		nics, err := de.Interfaces(d.name, c.runPath(d.name))
		if err != nil {
			return err
		}
		n, ok := findNIC(nics, d.live, iface)
		if !ok {
			return driver.Errorf(driver.ErrOperationFailed, "network device %s not found", iface)
		}
		if err := de.SetLink(d.name, c.runPath(d.name), n.MAC, up); err != nil {
			return err
		}
		if err := d.live.SetInterfaceLinkState(n.MAC, state); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "%v", err)
		}
		return c.save(d, d.live, nil)
	})
}

// deviceScope resolves attach/detach scopes: without flags libvirt means
// the live domain (virDomainAttachDevice); live hotplug is refused.
func deviceScope(d *dom, s driver.DeviceScope, what string) (config bool, err error) {
	scope := s.ModifyScope
	if !s.Flags {
		scope = driver.ModifyScope{Live: true}
	}
	live, config, err := testdriver.Scope(scope, d.active(), d.def != nil)
	if err != nil {
		return false, err
	}
	if live {
		return false, driver.Errorf(driver.ErrOperationUnsupported, "live hotplug of %s is not supported by the vsh engine yet; use --config", what)
	}
	return config, nil
}

func deviceAPI(base string, s driver.DeviceScope) string {
	if s.Flags {
		return base + "Flags"
	}
	return base
}

// AttachInterface adds an interface to the persistent definition.
func (c *Conn) AttachInterface(name string, spec driver.InterfaceSpec, scope driver.DeviceScope) error {
	return c.withDom(deviceAPI("virDomainAttachDevice", scope), name, func(d *dom) error {
		if _, err := deviceScope(d, scope, "network interfaces"); err != nil {
			return err
		}
		i := domxml.Interface{Type: spec.Type, MAC: spec.MAC, TargetDev: spec.Target, Model: spec.Model}
		switch spec.Type {
		case "network":
			i.SourceNetwork = spec.Source
		case "bridge":
			i.SourceBridge = spec.Source
		case "ethernet":
		default:
			return driver.Errorf(driver.ErrConfigUnsupported, "interface type '%s' is not supported; the vsh engine connects network, bridge and ethernet interfaces", spec.Type)
		}
		if spec.Model != "" && spec.Model != "virtio" {
			return driver.Errorf(driver.ErrConfigUnsupported, "NIC model '%s' is not supported; the vsh engine provides virtio-net", spec.Model)
		}
		if err := d.def.AddInterface(i); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "%v", err)
		}
		return c.save(d, nil, d.def)
	})
}

// DetachInterface removes an interface from the persistent definition.
func (c *Conn) DetachInterface(name, typ, mac string, scope driver.DeviceScope) error {
	return c.withDom(deviceAPI("virDomainDetachDevice", scope), name, func(d *dom) error {
		if _, err := deviceScope(d, scope, "network interfaces"); err != nil {
			return err
		}
		key, err := MatchInterface(d.def, typ, mac)
		if err != nil {
			return err
		}
		if err := d.def.RemoveInterface(key); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "%v", err)
		}
		return c.save(d, nil, d.def)
	})
}

// MatchInterface finds the one interface of type typ (and MAC address
// mac, when not "") and returns its MAC address, with virsh
// detach-interface's errors.
func MatchInterface(def *domxml.Domain, typ, mac string) (string, error) {
	var found []domxml.Interface
	for _, i := range def.Devices.Interfaces {
		if i.Type == typ {
			found = append(found, i)
		}
	}
	if len(found) == 0 {
		return "", driver.Errorf(driver.ErrOperationFailed, "No interface found whose type is %s", typ)
	}
	if mac != "" {
		for _, i := range found {
			if sameMAC(i.MAC, mac) {
				return i.MAC, nil
			}
		}
		return "", driver.Errorf(driver.ErrOperationFailed, "No interface with MAC address %s was found", mac)
	}
	if len(found) > 1 {
		return "", driver.Errorf(driver.ErrOperationFailed, "Domain has %d interfaces. Please specify which one to detach using --mac", len(found))
	}
	return found[0].MAC, nil
}
