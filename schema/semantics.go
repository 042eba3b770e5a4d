package schema

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// scaled parses the text of a sized element (<memory unit='GiB'>2</memory>)
// as libvirt does, reporting a positioned error and ok=false on failure.
func (v *validator) scaled(e *etree.Element, defaultUnit string, limit uint64) (uint64, bool) {
	if e == nil {
		return 0, false
	}
	unit := e.SelectAttrValue("unit", "")
	n, err := ParseScaled(e.Text(), unit, defaultUnit, limit)
	if err != nil {
		// Syntax problems of the number and unit were reported by the
		// structural pass; only overflow is new here.
		if strings.HasPrefix(err.Error(), "value too large") {
			v.errorf(e, "<%s> %s", e.Tag, err)
		}
		return 0, false
	}
	return n, true
}

// checkName applies libvirt's object name rules (non-empty, no '/') where
// the schema's own type (domains allow '/' in it) does not.
func (v *validator) checkName(root *etree.Element) {
	n := root.SelectElement("name")
	if n == nil {
		return
	}
	name := n.Text()
	switch {
	case name == "":
		v.errorf(n, "name must not be empty")
	case strings.Contains(name, "/"):
		v.errorf(n, "name %s cannot contain '/'", name)
	}
}

func (v *validator) checkUUID(root *etree.Element) {
	u := root.SelectElement("uuid")
	if u == nil {
		return
	}
	if _, err := ParseUUID(u.Text()); err != nil {
		// reported by the structural pass with the type description
		return
	}
}

// domainSemantics applies the domain parser's checks beyond structure.
func (v *validator) domainSemantics(root *etree.Element) {
	v.checkName(root)
	v.checkVariants(root, domainVariantIndex)
	const memLimit = math.MaxInt64 // libvirt caps memory at LLONG_MAX bytes
	mem, memOK := v.scaled(root.SelectElement("memory"), "KiB", memLimit)
	if (root.SelectElement("memory") == nil || memOK && mem == 0) && !hasNUMAMemory(root) {
		v.errorf(root, "memory size must be specified via <memory> or in the <numa> configuration")
	}
	if os := root.SelectElement("os"); os == nil || os.SelectElement("type") == nil {
		v.errorf(root, "an os <type> must be specified")
	}
	if cur := root.SelectElement("currentMemory"); cur != nil {
		c, ok := v.scaled(cur, "KiB", memLimit)
		if ok && memOK && c > mem {
			v.warnf(cur, "<currentMemory> (%d KiB) exceeds <memory> (%d KiB); define lowers it to <memory>, as libvirt does", c/1024, mem/1024)
		}
	}
	if mm := root.SelectElement("maxMemory"); mm != nil {
		m, ok := v.scaled(mm, "KiB", memLimit)
		if ok && memOK && m < mem {
			v.errorf(mm, "<maxMemory> (%d KiB) must not be less than <memory> (%d KiB)", m/1024, mem/1024)
		}
	}
	if vc := root.SelectElement("vcpu"); vc != nil {
		count, err := parseUint(vc.Text())
		if err == nil {
			if a := vc.SelectAttr("current"); a != nil {
				if cur, err := parseUint(a.Value); err == nil && cur > count {
					v.attrErrorf(vc, "current", "maximum vCPU count (%d) must not be less than current vCPU count (%d)", count, cur)
				}
			}
		}
	}
	if vc := root.SelectElement("vcpu"); vc != nil {
		if count, err := parseUint(vc.Text()); err == nil && count >= 1 {
			for _, cell := range root.FindElements("cpu/numa/cell") {
				if hi, ok := parseCPUSet(cell.SelectAttrValue("cpus", "")); ok && uint64(hi) >= count {
					v.attrErrorf(cell, "cpus", "CPU IDs in <numa> exceed the <vcpu> count (%d)", count)
				}
			}
		}
	}
	devices := root.SelectElement("devices")
	if devices == nil {
		return
	}
	targets := map[string]*etree.Element{}
	for _, disk := range devices.SelectElements("disk") {
		t := disk.SelectElement("target")
		if t == nil {
			continue
		}
		dev := t.SelectAttrValue("dev", "")
		if dev == "" {
			continue
		}
		if first, dup := targets[dev]; dup {
			v.attrErrorf(t, "dev", "target '%s' duplicated: also used by the disk at line %d", dev, v.d.Pos(first).Line)
			continue
		}
		targets[dev] = disk
	}
}

func hasNUMAMemory(root *etree.Element) bool {
	for _, c := range root.FindElements("cpu/numa/cell") {
		if c.SelectAttr("memory") != nil {
			return true
		}
	}
	return false
}

func parseUint(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if !allDigits(s) {
		return 0, fmt.Errorf("not an unsigned integer")
	}
	return strconv.ParseUint(s, 10, 64)
}

// networkSemantics applies the network parser's checks beyond structure.
func (v *validator) networkSemantics(root *etree.Element) {
	// The name's type already excludes '/' and the empty string.
	ips := root.SelectElements("ip")
	for _, ip := range ips {
		v.networkIP(ip)
	}
	if fw := root.SelectElement("forward"); fw != nil {
		mode := fw.SelectAttrValue("mode", "nat")
		if (mode == "nat" || mode == "route") && len(ips) == 0 {
			v.errorf(fw, "%s forwarding requested, but no IP address provided", mode)
		}
	}
}

// networkIP checks an <ip> element: address, prefix or netmask consistency,
// and that DHCP ranges and hosts lie inside the subnet.
func (v *validator) networkIP(ip *etree.Element) {
	addrS := ip.SelectAttrValue("address", "")
	addr, err := netip.ParseAddr(addrS)
	if err != nil {
		return
	}
	family := ip.SelectAttrValue("family", "")
	if family == "ipv6" && addr.Is4() || family == "ipv4" && addr.Is6() {
		v.attrErrorf(ip, "family", "family %s does not match address %s", family, addrS)
	}
	bits := -1
	if p := ip.SelectAttr("prefix"); p != nil {
		n, err := parseUint(p.Value)
		if err == nil {
			if addr.Is4() && n > 32 && n <= 128 { // above 128 the type check already failed
				v.attrErrorf(ip, "prefix", "prefix %d is too long for address %s", n, addrS)
			} else {
				bits = int(n)
			}
		}
	}
	if m := ip.SelectAttr("netmask"); m != nil {
		if ip.SelectAttr("prefix") != nil {
			v.attrErrorf(ip, "netmask", "<ip> must not have both netmask and prefix")
		}
		mask, err := netip.ParseAddr(m.Value)
		if err == nil {
			if addr.Is6() {
				v.attrErrorf(ip, "netmask", "netmask is only allowed for IPv4 addresses; use prefix for %s", addrS)
			} else if n, ok := maskBits(mask); !ok {
				v.warnf(ip, "netmask %s is not a contiguous network mask", m.Value)
			} else if bits < 0 {
				bits = n
			}
		}
	}
	if bits < 0 {
		if addr.Is4() {
			bits = classfulBits(addr)
		} else {
			bits = 64
		}
	}
	subnet := netip.PrefixFrom(addr, bits).Masked()
	dhcp := ip.SelectElement("dhcp")
	if dhcp == nil {
		return
	}
	for _, r := range dhcp.SelectElements("range") {
		s, err1 := netip.ParseAddr(r.SelectAttrValue("start", ""))
		e, err2 := netip.ParseAddr(r.SelectAttrValue("end", ""))
		if err1 != nil || err2 != nil {
			continue
		}
		if !subnet.Contains(s) {
			v.attrErrorf(r, "start", "DHCP range start %s is not in network %s", s, subnet)
		}
		if !subnet.Contains(e) {
			v.attrErrorf(r, "end", "DHCP range end %s is not in network %s", e, subnet)
		}
		if subnet.Contains(s) && subnet.Contains(e) && e.Less(s) {
			v.errorf(r, "DHCP range start %s is after its end %s", s, e)
		}
	}
	for _, h := range dhcp.SelectElements("host") {
		hs := h.SelectAttrValue("ip", "")
		if a, err := netip.ParseAddr(hs); err == nil && !subnet.Contains(a) {
			// libvirt accepts it; dnsmasq will never hand it out.
			v.warnf(h, "DHCP host address %s is not in network %s", a, subnet)
		}
		if addr.Is4() && h.SelectAttr("mac") == nil && h.SelectAttr("name") == nil {
			v.errorf(h, "static DHCP host entries of an IPv4 network need a mac or a name attribute")
		}
	}
}

// maskBits returns the prefix length of a contiguous IPv4 netmask.
func maskBits(m netip.Addr) (int, bool) {
	if !m.Is4() {
		return 0, false
	}
	b := m.As4()
	x := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for x&0x80000000 != 0 {
		n++
		x <<= 1
	}
	return n, x == 0
}

// classfulBits is the network size libvirt assumes for an IPv4 address
// without prefix or netmask.
func classfulBits(a netip.Addr) int {
	b := a.As4()[0]
	switch {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}

// poolSemantics applies the pool parser's checks beyond structure.
func (v *validator) poolSemantics(root *etree.Element) {
	v.checkVariants(root, poolVariantIndex)
	if target := root.SelectElement("target"); target != nil {
		if p := target.SelectElement("path"); p != nil {
			if path := strings.TrimSpace(p.Text()); path != "" && !strings.HasPrefix(path, "/") {
				v.errorf(p, "pool target path %q must be absolute", path)
			}
		}
	}
}

// volumeSemantics applies the volume parser's checks beyond structure.
func (v *validator) volumeSemantics(root *etree.Element) {
	n := root.SelectElement("name")
	if n != nil && strings.TrimSpace(n.Text()) == "" {
		v.errorf(n, "name must not be empty")
	}
	capE := root.SelectElement("capacity")
	capacity, capOK := v.scaled(capE, "bytes", 0)
	alloc, allocOK := v.scaled(root.SelectElement("allocation"), "bytes", 0)
	v.scaled(root.SelectElement("physical"), "bytes", 0)
	if capE == nil {
		v.errorf(root, "missing capacity element: a volume needs <capacity>")
	}
	if capOK && allocOK && alloc > capacity {
		v.warnf(root.SelectElement("allocation"), "<allocation> (%d bytes) exceeds <capacity> (%d bytes)", alloc, capacity)
	}
}
