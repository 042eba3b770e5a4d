package domxml

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"vsh/schema"
)

// Network is a parsed virtual network definition.
type Network struct {
	Name, UUID string
	Forward    Forward
	Bridge     Bridge
	MAC        string
	IPs        []IP
	DNS        DNS
	Domain     string // <domain name=...>

	src source
}

// Forward is <forward mode= dev=>; Mode "" means an isolated network.
type Forward struct {
	Mode, Dev string
}

// Bridge is <bridge name= stp= delay=>.
type Bridge struct {
	Name, STP string
	Delay     int
}

// IP is <ip>.
type IP struct {
	Family, Address, Netmask string
	Prefix                   int
	DHCPRanges               []DHCPRange
	DHCPHosts                []DHCPHost
}

// DHCPRange is <dhcp><range start= end=>.
type DHCPRange struct{ Start, End string }

// DHCPHost is <dhcp><host mac= name= ip=>.
type DHCPHost struct{ MAC, Name, IP string }

// DNS is <dns>.
type DNS struct {
	Hosts      []DNSHost
	Forwarders []string
}

// DNSHost is <dns><host ip=><hostname>...</hostname></host>.
type DNSHost struct {
	IP        string
	Hostnames []string
}

// Libvirt's order of network elements.
var networkOrder = []string{"name", "uuid", "metadata", "forward", "port", "portgroup", "bridge", "mtu", "mac", "domain", "dns", "ip", "route"}

// ParseNetwork parses and checks a network definition; see ParseDomain.
func ParseNetwork(file string, data []byte, validate bool) (*Network, error) {
	doc, err := parseKind(file, data, schema.KindNetwork, validate)
	if err != nil {
		return nil, err
	}
	n := &Network{src: newSource(doc, data)}
	if errs := n.load(); len(errs) > 0 {
		return nil, errs
	}
	return n, nil
}

func (n *Network) load() schema.ErrorList {
	l := &loader{s: &n.src}
	r := n.src.root()
	*n = Network{src: n.src}
	n.Name = childText(r, "name")
	n.UUID = l.uuid(r.SelectElement("uuid"))
	if f := r.SelectElement("forward"); f != nil {
		n.Forward = Forward{Mode: attr(f, "mode"), Dev: attr(f, "dev")}
		if n.Forward.Mode == "" {
			n.Forward.Mode = "nat" // libvirt's default for <forward/>
		}
	}
	if b := r.SelectElement("bridge"); b != nil {
		n.Bridge = Bridge{Name: attr(b, "name"), STP: attr(b, "stp"), Delay: l.integer(b, "delay")}
	}
	n.MAC = l.mac(r.SelectElement("mac"))
	n.Domain = attr(r.SelectElement("domain"), "name")
	for _, ie := range r.SelectElements("ip") {
		ip := IP{Family: attr(ie, "family"), Address: attr(ie, "address"), Netmask: attr(ie, "netmask"), Prefix: l.integer(ie, "prefix")}
		if dh := ie.SelectElement("dhcp"); dh != nil {
			for _, rg := range dh.SelectElements("range") {
				ip.DHCPRanges = append(ip.DHCPRanges, DHCPRange{Start: attr(rg, "start"), End: attr(rg, "end")})
			}
			for _, h := range dh.SelectElements("host") {
				ip.DHCPHosts = append(ip.DHCPHosts, DHCPHost{MAC: attr(h, "mac"), Name: attr(h, "name"), IP: attr(h, "ip")})
			}
		}
		n.IPs = append(n.IPs, ip)
	}
	if dns := r.SelectElement("dns"); dns != nil {
		for _, h := range dns.SelectElements("host") {
			dh := DNSHost{IP: attr(h, "ip")}
			for _, hn := range h.SelectElements("hostname") {
				dh.Hostnames = append(dh.Hostnames, strings.TrimSpace(hn.Text()))
			}
			n.DNS.Hosts = append(n.DNS.Hosts, dh)
		}
		for _, f := range dns.SelectElements("forwarder") {
			if a := attr(f, "addr"); a != "" {
				n.DNS.Forwarders = append(n.DNS.Forwarders, a)
			}
		}
	}
	return l.errs
}

// XML returns the definition with only what vsh changed differing from the
// user's file.
func (n *Network) XML() []byte { return n.src.xml() }

// Pos returns the position of an element of the document.
func (n *Network) Pos(e *etree.Element) schema.Pos { return n.src.pos(e) }

// Document returns the underlying document.
func (n *Network) Document() *schema.Document { return n.src.doc }

// Clone returns an independent copy of n.
func (n *Network) Clone() *Network {
	c, err := cloneSource(&n.src)
	if err != nil {
		c = copySource(&n.src)
	}
	out := &Network{src: c}
	out.load()
	return out
}

// BridgePrefix names the bridges vsh creates: libvirt uses virbrN, and vsh
// must not clash with a libvirt running on the same host.
const BridgePrefix = "vshbr"

// needsBridge tells whether libvirt would manage a bridge for this network.
func (n *Network) needsBridge() bool {
	switch n.Forward.Mode {
	case "", "nat", "route", "open":
		return true
	}
	return false
}

// FillDefaults adds what libvirt generates on net-define: a <uuid>, a bridge
// name (vshbrN, the lowest N not in usedBridges) and a bridge MAC address.
// It reports whether the document changed.
func (n *Network) FillDefaults(usedBridges []string) (bool, error) {
	r := n.src.root()
	changed := false
	if r.SelectElement("uuid") == nil {
		e := etree.NewElement("uuid")
		e.SetText(NewUUID())
		insertChild(r, e, before(networkOrder, "uuid")...)
		changed = true
	}
	if n.needsBridge() {
		b := r.SelectElement("bridge")
		if b == nil || attr(b, "name") == "" {
			used := map[string]bool{}
			for _, u := range usedBridges {
				used[u] = true
			}
			name := ""
			for i := 0; ; i++ {
				name = BridgePrefix + strconv.Itoa(i)
				if !used[name] {
					break
				}
			}
			if b == nil {
				b = etree.NewElement("bridge")
				b.CreateAttr("name", name)
				b.CreateAttr("stp", "on")
				b.CreateAttr("delay", "0")
				insertChild(r, b, before(networkOrder, "bridge")...)
			} else {
				b.Attr = append([]etree.Attr{{Key: "name", Value: name}}, b.Attr...)
			}
			changed = true
		}
		if r.SelectElement("mac") == nil {
			m := etree.NewElement("mac")
			m.CreateAttr("address", NewMAC())
			insertChild(r, m, before(networkOrder, "mac")...)
			changed = true
		}
	}
	if changed {
		n.src.dirty = true
		n.load()
	}
	return changed, nil
}

// Net returns the subnet of an <ip> element, with IP set to the host's
// (gateway) address.
func (ip IP) Net() (*net.IPNet, error) {
	addr := net.ParseIP(ip.Address)
	if addr == nil {
		return nil, fmt.Errorf("invalid IP address %q", ip.Address)
	}
	bits := 128
	if v4 := addr.To4(); v4 != nil {
		addr, bits = v4, 32
	}
	var mask net.IPMask
	switch {
	case ip.Netmask != "":
		m := net.ParseIP(ip.Netmask).To4()
		if m == nil || bits != 32 {
			return nil, fmt.Errorf("invalid netmask %q", ip.Netmask)
		}
		mask = net.IPMask(m)
		if ones, b := mask.Size(); ones == 0 && b == 0 {
			return nil, fmt.Errorf("netmask %q is not contiguous", ip.Netmask)
		}
	case ip.Prefix > 0:
		if ip.Prefix > bits {
			return nil, fmt.Errorf("prefix %d is too long for %s", ip.Prefix, ip.Address)
		}
		mask = net.CIDRMask(ip.Prefix, bits)
	default:
		// libvirt derives the classful mask of an IPv4 address without one.
		switch {
		case bits != 32:
			return nil, fmt.Errorf("<ip address='%s'> needs a prefix", ip.Address)
		case addr[0] < 128:
			mask = net.CIDRMask(8, 32)
		case addr[0] < 192:
			mask = net.CIDRMask(16, 32)
		case addr[0] < 224:
			mask = net.CIDRMask(24, 32)
		default:
			return nil, fmt.Errorf("<ip address='%s'> needs a netmask or prefix", ip.Address)
		}
	}
	return &net.IPNet{IP: addr, Mask: mask}, nil
}

// Subnet returns the network's first IPv4 subnet (masked), or nil when it
// has none.
func (n *Network) Subnet() (*net.IPNet, error) {
	for _, ip := range n.IPs {
		if ip.Family == "ipv6" || strings.Contains(ip.Address, ":") {
			continue
		}
		s, err := ip.Net()
		if err != nil {
			return nil, err
		}
		return &net.IPNet{IP: s.IP.Mask(s.Mask), Mask: s.Mask}, nil
	}
	return nil, nil
}
