package testdriver

import (
	"fmt"
	"net"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

var _ driver.DomainDevices = (*Conn)(nil)

// nameInterfaces gives every interface of a starting domain without a
// target device the first free "testnetN" name, as libvirt's test driver
// does.
func nameInterfaces(live *domxml.Domain) {
	used := map[string]bool{}
	for _, i := range live.Devices.Interfaces {
		used[i.TargetDev] = true
	}
	n := 0
	for _, i := range live.Devices.Interfaces {
		if i.TargetDev != "" || i.MAC == "" {
			continue
		}
		for used[fmt.Sprintf("testnet%d", n)] {
			n++
		}
		name := fmt.Sprintf("testnet%d", n)
		if live.SetInterfaceTarget(i.MAC, name) == nil {
			used[name] = true
		}
	}
}

// runningDomain finds a domain and checks that it runs.
func (c *Conn) runningDomain(name string) (*domain, error) {
	d, err := c.h.byName(name)
	if err != nil {
		return nil, err
	}
	if !d.active() {
		return nil, notRunning()
	}
	return d, nil
}

// lastUpdate is the fixed last_update the test driver reports.
const lastUpdate = 627319920

// DomainMemoryStats returns the test driver's statistics, derived from the
// current memory like libvirt's; a domain without a balloon has none.
func (c *Conn) DomainMemoryStats(name string) ([]driver.MemoryStat, error) {
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.runningDomain(name)
	if err != nil {
		return nil, err
	}
	if b := d.live.Devices.MemBalloon; b == nil || b.Model == "none" {
		return []driver.MemoryStat{}, nil
	}
	cur := d.live.CurrentMemoryKiB
	return []driver.MemoryStat{
		{Tag: "actual", Value: cur},
		{Tag: "swap_in", Value: 0},
		{Tag: "swap_out", Value: 0},
		{Tag: "major_fault", Value: 0},
		{Tag: "minor_fault", Value: 0},
		{Tag: "unused", Value: cur / 2},
		{Tag: "available", Value: cur},
		{Tag: "usable", Value: cur / 2},
		{Tag: "last_update", Value: lastUpdate},
		{Tag: "disk_caches", Value: cur / 8},
		{Tag: "hugetlb_pgalloc", Value: 0},
		{Tag: "hugetlb_pgfail", Value: 0},
		{Tag: "rss", Value: cur / 2},
	}, nil
}

// SetMemoryStatsPeriod records the balloon's statistics period in the
// definitions the scope names.
func (c *Conn) SetMemoryStatsPeriod(name string, seconds int, scope driver.ModifyScope) error {
	return c.editDomain("virDomainSetMemoryStatsPeriod", name, scope, func(_ *domain, defs []*domxml.Domain) error {
		return setStatsPeriod(defs, seconds)
	})
}

// setStatsPeriod sets the period in every definition, or in none when one
// has no balloon.
func setStatsPeriod(defs []*domxml.Domain, seconds int) error {
	for _, def := range defs {
		if b := def.Devices.MemBalloon; b == nil || b.Model == "none" {
			return driver.Errorf(driver.ErrInternal, "No memory balloon device configured, can not set the collection period")
		}
	}
	for _, def := range defs {
		if err := def.SetBalloonStatsPeriod(seconds); err != nil {
			return driver.Errorf(driver.ErrInvalidArg, "%v", err)
		}
	}
	return nil
}

// SetStatsPeriod is setStatsPeriod for the local driver.
func SetStatsPeriod(defs []*domxml.Domain, seconds int) error { return setStatsPeriod(defs, seconds) }

// findInterface returns the index of the interface whose target device or
// MAC address is ref.
func findInterface(def *domxml.Domain, ref string) (int, bool) {
	want, macErr := net.ParseMAC(ref)
	for i, n := range def.Devices.Interfaces {
		if n.TargetDev != "" && n.TargetDev == ref {
			return i, true
		}
		if got, err := net.ParseMAC(n.MAC); macErr == nil && err == nil && got.String() == want.String() {
			return i, true
		}
	}
	return 0, false
}

// InterfaceStats returns counters that grow with the clock, as libvirt's
// test driver computes them.
func (c *Conn) InterfaceStats(name, iface string) (driver.InterfaceStats, error) {
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.runningDomain(name)
	if err != nil {
		return driver.InterfaceStats{}, err
	}
	if _, ok := findInterface(d.live, iface); !ok {
		return driver.InterfaceStats{}, driver.Errorf(driver.ErrInvalidArg, "'%s' is not a known interface", iface)
	}
	base := time.Now().UnixMicro()
	return driver.InterfaceStats{
		RxBytes: base / 10, RxPackets: base / 100, RxErrs: base / 1000000, RxDrop: base / 2000000,
		TxBytes: base / 20, TxPackets: base / 110, TxErrs: base / 3000000, TxDrop: base / 4000000,
	}, nil
}

// InterfaceAddresses returns one made-up address per interface, as
// libvirt's test driver does whatever the source: on the 192.168.122.0/24
// network for type network (depending on the domain ID), 192.168.0.0/24
// otherwise.
func (c *Conn) InterfaceAddresses(name, source string) ([]driver.InterfaceAddresses, error) {
	switch source {
	case "", driver.AddrSourceLease, driver.AddrSourceAgent, driver.AddrSourceARP:
	default:
		return nil, driver.Errorf(driver.ErrInvalidArg, "Unknown IP address data source %s", source)
	}
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.runningDomain(name)
	if err != nil {
		return nil, err
	}
	out := []driver.InterfaceAddresses{}
	for i, n := range d.live.Devices.Interfaces {
		addr := fmt.Sprintf("192.168.0.%d", 1+i)
		if n.Type == "network" {
			addr = fmt.Sprintf("192.168.122.%d", 3+20*(d.id-1)+i)
		}
		out = append(out, driver.InterfaceAddresses{Name: n.TargetDev, MAC: n.MAC,
			Addrs: []driver.IPAddress{{Type: "ipv4", Addr: addr, Prefix: 24}}})
	}
	return out, nil
}

// SetInterfaceLink is not supported by libvirt's test driver
// (virDomainUpdateDeviceFlags).
func (c *Conn) SetInterfaceLink(name, iface string, up bool, config bool) error {
	if err := c.writable("virDomainUpdateDeviceFlags"); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "virDomainUpdateDeviceFlags")
}

func deviceAPI(base string, s driver.DeviceScope) string {
	if s.Flags {
		return base + "Flags"
	}
	return base
}

// AttachInterface is not supported by libvirt's test driver.
func (c *Conn) AttachInterface(name string, spec driver.InterfaceSpec, scope driver.DeviceScope) error {
	api := deviceAPI("virDomainAttachDevice", scope)
	if err := c.writable(api); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "%s", api)
}

// DetachInterface is not supported by libvirt's test driver.
func (c *Conn) DetachInterface(name, typ, mac string, scope driver.DeviceScope) error {
	api := deviceAPI("virDomainDetachDevice", scope)
	if err := c.writable(api); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "%s", api)
}
