// Package network sets up vsh's virtual networks on the host and opens the
// tap devices guests use.
//
// A network's Start creates its bridge with netlink, gives it the XML's
// addresses, loads an nftables table of its own (table inet vsh-<name>: NAT
// or routing, and refusing other traffic across the bridge) through
// Debian's nft, and starts one dnsmasq for DHCP and DNS with its
// configuration, pid and lease files in the network's run directory.
// Everything Start creates is recorded in that directory as it is created,
// so Stop removes exactly that, even after a failed or interrupted Start.
//
// Importing the package installs Backend as local.DefaultNetworkBackend.
package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vsh/domxml"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/local"
)

func init() { local.DefaultNetworkBackend = Backend{} }

// stateFile records in the run directory what Start created.
const stateFile = "network-state.json"

// state is what Start has created so far.
type state struct {
	Bridge     string `json:"bridge,omitempty"`      // bridge Start created
	Table      string `json:"nft_table,omitempty"`   // nftables table loaded
	Dnsmasq    bool   `json:"dnsmasq,omitempty"`     // dnsmasq started
	IPForward  bool   `json:"ip_forward,omitempty"`  // ip_forward was switched on (left on, as libvirt does)
	HostBridge string `json:"host_bridge,omitempty"` // forward mode='bridge': the existing bridge used
}

func loadState(runDir string) (state, error) {
	var s state
	b, err := os.ReadFile(filepath.Join(runDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(runDir, stateFile), err)
	}
	return s, nil
}

func (s state) save(runDir string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(runDir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(runDir, stateFile))
}

// Backend implements local.NetworkBackend on the host's network stack.
type Backend struct{}

// Start brings up n: bridge, addresses, firewall and dnsmasq. A failure
// undoes what it had done.
func (b Backend) Start(n *domxml.Network, runDir string) (err error) {
	defer func() {
		if err != nil {
			b.Stop(n, runDir)
		}
	}()
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return wrapErr(err)
	}
	// Leftovers a crashed earlier run recorded here go first.
	if err := b.Stop(n, runDir); err != nil {
		return err
	}
	var st state
	switch n.Forward.Mode {
	case "bridge":
		// An existing host bridge: vsh only checks it is there.
		name := n.Bridge.Name
		if name == "" {
			return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': <forward mode='bridge'> needs <bridge name='...'/>", n.Name)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': host bridge %s: %v", n.Name, name, err)
		}
		if _, ok := l.(*netlink.Bridge); !ok {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': %s is a %s device, not a bridge", n.Name, name, l.Type())
		}
		st.HostBridge = name
		return wrapErr(st.save(runDir))
	case "", "nat", "route", "open":
	default:
		return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': forward mode '%s' is not supported by vsh (nat, route, open, bridge or none)", n.Name, n.Forward.Mode)
	}
	bridge := n.Bridge.Name
	if bridge == "" {
		return driver.Errorf(driver.ErrInternal, "network '%s' has no bridge name", n.Name)
	}
	if !validIfName(bridge) {
		return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': bridge name '%s' is not a valid interface name", n.Name, bridge)
	}
	if n.Forward.Dev != "" && !validIfName(n.Forward.Dev) {
		return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': forward dev '%s' is not a valid interface name", n.Name, n.Forward.Dev)
	}
	var subnets []*net.IPNet
	for _, ip := range n.IPs {
		sub, err := ip.Net()
		if err != nil {
			return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': %v", n.Name, err)
		}
		subnets = append(subnets, &net.IPNet{IP: sub.IP.Mask(sub.Mask), Mask: sub.Mask})
	}
	// Check everything that can be checked before touching the host.
	var dnsConf string
	if len(n.IPs) > 0 {
		if dnsConf, err = dnsmasqConfig(n, bridge, runDir); err != nil {
			return driver.Errorf(driver.ErrConfigUnsupported, "%v", err)
		}
		if _, err := dnsmasqPath(); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': %v", n.Name, err)
		}
	}
	if n.Forward.Mode != "open" {
		if _, err := nftPath(); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': %v", n.Name, err)
		}
	}
	if _, err := netlink.LinkByName(bridge); err == nil {
		return driver.Errorf(driver.ErrOperationFailed, "network '%s': bridge %s already exists", n.Name, bridge)
	}

	// The bridge, its MAC and addresses.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = bridge
	if n.MAC != "" {
		if attrs.HardwareAddr, err = net.ParseMAC(n.MAC); err != nil {
			return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': bad MAC %s", n.Name, n.MAC)
		}
	}
	br := &netlink.Bridge{LinkAttrs: attrs}
	if err := netlink.LinkAdd(br); err != nil {
		if errors.Is(err, unix.EPERM) {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': creating bridge %s needs root (CAP_NET_ADMIN)", n.Name, bridge)
		}
		return driver.Errorf(driver.ErrOperationFailed, "network '%s': creating bridge %s: %v", n.Name, bridge, err)
	}
	st.Bridge = bridge
	if err := st.save(runDir); err != nil {
		return wrapErr(err)
	}
	link, err := netlink.LinkByName(bridge)
	if err != nil {
		return driver.Errorf(driver.ErrOperationFailed, "network '%s': bridge %s: %v", n.Name, bridge, err)
	}
	for _, ip := range n.IPs {
		sub, err := ip.Net()
		if err != nil {
			return driver.Errorf(driver.ErrConfigUnsupported, "network '%s': %v", n.Name, err)
		}
		addr := &netlink.Addr{IPNet: sub}
		if sub.IP.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': adding address %s to %s: %v", n.Name, sub, bridge, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return driver.Errorf(driver.ErrOperationFailed, "network '%s': setting %s up: %v", n.Name, bridge, err)
	}

	// Forwarding and firewall.
	if n.Forward.Mode == "nat" || n.Forward.Mode == "route" {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': enabling IP forwarding: %v", n.Name, err)
		}
		st.IPForward = true
	}
	if n.Forward.Mode != "open" {
		rs := ruleset{table: TableName(n.Name), mode: n.Forward.Mode, bridge: bridge, subnets: subnets, dev: n.Forward.Dev}
		// Recorded first: a half-loaded table must be removed too, and nft
		// loads a file atomically anyway.
		st.Table = rs.table
		if err := st.save(runDir); err != nil {
			return wrapErr(err)
		}
		if err := loadRules(rs, runDir); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': firewall rules: %v", n.Name, err)
		}
	}

	// DHCP and DNS.
	if dnsConf != "" {
		st.Dnsmasq = true
		if err := st.save(runDir); err != nil {
			return wrapErr(err)
		}
		if err := startDnsmasq(dnsConf, runDir); err != nil {
			return driver.Errorf(driver.ErrOperationFailed, "network '%s': %v", n.Name, err)
		}
	}
	return wrapErr(st.save(runDir))
}

func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	return driver.Errorf(driver.ErrSystem, "%v", err)
}

// Stop removes what Start recorded in runDir, in reverse order, and
// nothing else. It keeps going past errors and returns the first.
func (Backend) Stop(n *domxml.Network, runDir string) error {
	st, err := loadState(runDir)
	if err != nil {
		return wrapErr(err)
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if st.Dnsmasq {
		keep(stopDnsmasq(runDir))
	}
	if st.Table != "" {
		keep(deleteTable(st.Table))
	}
	if st.Bridge != "" {
		if l, err := netlink.LinkByName(st.Bridge); err == nil {
			if _, ok := l.(*netlink.Bridge); ok {
				keep(netlink.LinkDel(l))
			}
		}
	}
	if first != nil {
		return driver.Errorf(driver.ErrOperationFailed, "network '%s': %v", n.Name, first)
	}
	os.Remove(filepath.Join(runDir, stateFile))
	return nil
}

// Leases reads the network's dnsmasq lease file.
func (Backend) Leases(n *domxml.Network, runDir string, mac string) ([]driver.DHCPLease, error) {
	f, err := os.Open(filepath.Join(runDir, dnsmasqLeases))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapErr(err)
	}
	defer f.Close()
	prefix := func(ip net.IP) int {
		for _, x := range n.IPs {
			if sub, err := x.Net(); err == nil && sub.Contains(ip) {
				ones, _ := sub.Mask.Size()
				return ones
			}
		}
		if ip.To4() != nil {
			return 32
		}
		return 128
	}
	leases, err := parseLeases(f, prefix, mac)
	if err != nil {
		return nil, driver.Errorf(driver.ErrInternal, "network '%s': %v", n.Name, err)
	}
	// dnsmasq prunes expired leases lazily; libvirt lists live ones only.
	now := time.Now()
	live := leases[:0]
	for _, l := range leases {
		if l.Expiry.IsZero() || l.Expiry.After(now) {
			live = append(live, l)
		}
	}
	return live, nil
}

// validIfName accepts what Linux accepts as an interface name and nft and
// dnsmasq configuration can carry unquoted.
func validIfName(s string) bool {
	if s == "" || len(s) >= unix.IFNAMSIZ || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}
