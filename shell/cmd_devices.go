package shell

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"vsh/hypervisor/driver"
)

// Commands that reach a running domain's devices: the memory balloon's
// statistics and the network interfaces (counters, addresses, link state,
// attach and detach). They go through driver.DomainDevices.

func init() {
	for name, h := range map[string]handler{
		"dommemstat": cmdDommemstat, "domifstat": cmdDomifstat, "domifaddr": cmdDomifaddr,
		"domif-getlink": cmdDomifGetlink, "domif-setlink": cmdDomifSetlink,
		"attach-interface": cmdAttachInterface, "detach-interface": cmdDetachInterface,
	} {
		handlers[name] = h
	}
	for _, c := range deviceCommands {
		addVirshCommand(c)
	}
	jsonCommands = append(jsonCommands, "dommemstat", "domifstat", "domifaddr", "domif-getlink")
}

// addVirshCommand puts c among virsh's commands in help order (by name
// within its group), unless it is already defined.
func addVirshCommand(c *Command) {
	at, last := -1, -1
	for i, x := range virshCommands {
		if x.Name == c.Name {
			return
		}
		if x.Group == c.Group {
			last = i
			if at < 0 && x.Name > c.Name {
				at = i
			}
		}
	}
	if at < 0 {
		at = last + 1
		if last < 0 {
			at = len(virshCommands)
		}
	}
	virshCommands = append(virshCommands, nil)
	copy(virshCommands[at+1:], virshCommands[at:])
	virshCommands[at] = c
}

var domainOption = Option{Name: "domain", Kind: KindData, Required: true, Label: "[--domain] <string>", Help: "domain name, id or uuid"}

// deviceCommands are virsh 9.0's definitions (virsh help CMD).
var deviceCommands = []*Command{
	{Name: "dommemstat", Group: "monitor", Brief: "get memory statistics for a domain", Synopsis: "<domain> [--period <number>] [--config] [--live] [--current]", Description: "Get memory statistics for a running domain.", Options: []Option{
		domainOption,
		{Name: "period", Kind: KindInt, Label: "--period <number>", Help: "period in seconds to set collection"},
		{Name: "config", Kind: KindBool, Label: "--config", Help: "affect next boot"},
		{Name: "live", Kind: KindBool, Label: "--live", Help: "affect running domain"},
		{Name: "current", Kind: KindBool, Label: "--current", Help: "affect current domain"},
	}},
	{Name: "domifstat", Group: "monitor", Brief: "get network interface stats for a domain", Synopsis: "<domain> <interface>", Description: "Get network interface stats for a running domain.", Options: []Option{
		domainOption,
		{Name: "interface", Kind: KindData, Required: true, Label: "[--interface] <string>", Help: "interface device specified by name or MAC Address"},
	}},
	{Name: "domifaddr", Group: "monitor", Brief: "Get network interfaces' addresses for a running domain", Synopsis: "<domain> [--interface <string>] [--full] [--source <string>]", Description: "Get network interfaces' addresses for a running domain", Options: []Option{
		domainOption,
		{Name: "interface", Kind: KindString, Label: "--interface <string>", Help: "network interface name"},
		{Name: "full", Kind: KindBool, Label: "--full", Help: "always display names and MACs of interfaces"},
		{Name: "source", Kind: KindString, Label: "--source <string>", Help: "address source: 'lease', 'agent', or 'arp'"},
	}},
	{Name: "domif-getlink", Group: "monitor", Brief: "get link state of a virtual interface", Synopsis: "<domain> <interface> [--config]", Description: "Get link state of a domain's virtual interface.", Options: []Option{
		domainOption,
		{Name: "interface", Kind: KindData, Required: true, Label: "[--interface] <string>", Help: "interface device (MAC Address)"},
		{Name: "config", Kind: KindBool, Label: "--config", Help: "Get persistent interface state"},
	}},
	{Name: "domif-setlink", Group: "domain", Brief: "set link state of a virtual interface", Synopsis: "<domain> <interface> <state> [--config] [--print-xml]", Description: "Set link state of a domain's virtual interface. This command wraps usage of update-device command.", Options: []Option{
		domainOption,
		{Name: "interface", Kind: KindData, Required: true, Label: "[--interface] <string>", Help: "interface device (MAC Address)"},
		{Name: "state", Kind: KindData, Required: true, Label: "[--state] <string>", Help: "new state of the device"},
		{Name: "config", Kind: KindBool, Label: "--config", Help: "affect next boot"},
		{Name: "print-xml", Kind: KindBool, Label: "--print-xml", Help: "print XML document rather than set the interface link state"},
	}},
	{Name: "attach-interface", Group: "domain", Brief: "attach network interface", Synopsis: "<domain> <type> <source> [--target <string>] [--mac <string>] [--script <string>] [--model <string>] [--alias <string>] [--inbound <string>] [--outbound <string>] [--persistent] [--config] [--live] [--current] [--print-xml] [--managed] [--source-mode <string>]", Description: "Attach new network interface.", Options: []Option{
		domainOption,
		{Name: "type", Kind: KindData, Required: true, Label: "[--type] <string>", Help: "network interface type"},
		{Name: "source", Kind: KindData, Required: true, Label: "[--source] <string>", Help: "source of network interface"},
		{Name: "target", Kind: KindString, Label: "--target <string>", Help: "target network name"},
		{Name: "mac", Kind: KindString, Label: "--mac <string>", Help: "MAC address"},
		{Name: "script", Kind: KindString, Label: "--script <string>", Help: "script used to bridge network interface"},
		{Name: "model", Kind: KindString, Label: "--model <string>", Help: "model type"},
		{Name: "alias", Kind: KindString, Label: "--alias <string>", Help: "custom alias name of interface device"},
		{Name: "inbound", Kind: KindString, Label: "--inbound <string>", Help: "control domain's incoming traffics"},
		{Name: "outbound", Kind: KindString, Label: "--outbound <string>", Help: "control domain's outgoing traffics"},
		{Name: "persistent", Kind: KindBool, Label: "--persistent", Help: "make live change persistent"},
		{Name: "config", Kind: KindBool, Label: "--config", Help: "affect next boot"},
		{Name: "live", Kind: KindBool, Label: "--live", Help: "affect running domain"},
		{Name: "current", Kind: KindBool, Label: "--current", Help: "affect current domain"},
		{Name: "print-xml", Kind: KindBool, Label: "--print-xml", Help: "print XML document rather than attach the interface"},
		{Name: "managed", Kind: KindBool, Label: "--managed", Help: "libvirt will automatically detach/attach the device from/to host"},
		{Name: "source-mode", Kind: KindString, Label: "--source-mode <string>", Help: "mode attribute of <source/> element"},
	}},
	{Name: "detach-interface", Group: "domain", Brief: "detach network interface", Synopsis: "<domain> <type> [--mac <string>] [--persistent] [--config] [--live] [--current] [--print-xml]", Description: "Detach network interface.", Options: []Option{
		domainOption,
		{Name: "type", Kind: KindData, Required: true, Label: "[--type] <string>", Help: "network interface type"},
		{Name: "mac", Kind: KindString, Label: "--mac <string>", Help: "MAC address"},
		{Name: "persistent", Kind: KindBool, Label: "--persistent", Help: "make live change persistent"},
		{Name: "config", Kind: KindBool, Label: "--config", Help: "affect next boot"},
		{Name: "live", Kind: KindBool, Label: "--live", Help: "affect running domain"},
		{Name: "current", Kind: KindBool, Label: "--current", Help: "affect current domain"},
		{Name: "print-xml", Kind: KindBool, Label: "--print-xml", Help: "print XML document rather than detach the interface"},
	}},
}

// devices returns the connection's device API, or libvirt's error for a
// driver without it.
func (s *Shell) devices(api string) (driver.DomainDevices, error) {
	dd, ok := s.conn.(driver.DomainDevices)
	if !ok {
		return nil, driver.Errorf(driver.ErrNoSupport, "%s", api)
	}
	return dd, nil
}

// exclusive refuses two options given together, with virsh's text.
func exclusive(c *Call, a, b string) error {
	if c.Has(a) && c.Has(b) {
		return fail(nil, "Options --%s and --%s are mutually exclusive", a, b)
	}
	return nil
}

func cmdDommemstat(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	for _, o := range []string{"live", "config"} {
		if err := exclusive(c, "current", o); err != nil {
			return err
		}
	}
	if c.Has("period") {
		p, err := strconv.Atoi(c.Str("period"))
		if err != nil {
			return fail(nil, "Numeric value '%s' for <period> option is malformed or out of range", c.Str("period"))
		}
		if p < 0 {
			return fail(nil, "Invalid collection period value '%d'", p)
		}
		dd, err := s.devices("virDomainSetMemoryStatsPeriod")
		if err == nil {
			err = dd.SetMemoryStatsPeriod(d.Name, p, driver.ModifyScope{Live: c.Has("live"), Config: c.Has("config")})
		}
		if err != nil {
			return fail(err, "Unable to change balloon collection period.")
		}
		return nil
	}
	dd, err := s.devices("virDomainMemoryStats")
	if err == nil {
		var stats []driver.MemoryStat
		if stats, err = dd.DomainMemoryStats(d.Name); err == nil {
			if c.Has("json") {
				m := map[string]uint64{}
				for _, st := range stats {
					m[st.Tag] = st.Value
				}
				return s.printJSON(m)
			}
			for _, st := range stats {
				s.printf("%s %d\n", st.Tag, st.Value)
			}
			return nil
		}
	}
	return fail(err, "Failed to get memory statistics for domain %s", c.Str("domain"))
}

func cmdDomifstat(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	iface := c.Str("interface")
	dd, err := s.devices("virDomainInterfaceStats")
	var st driver.InterfaceStats
	if err == nil {
		st, err = dd.InterfaceStats(d.Name, iface)
	}
	if err != nil {
		return fail(err, "Failed to get interface stats %s %s", c.Str("domain"), iface)
	}
	if c.Has("json") {
		return s.printJSON(struct {
			Interface string `json:"interface"`
			driver.InterfaceStats
		}{iface, st})
	}
	for _, f := range []struct {
		name  string
		value int64
	}{
		{"rx_bytes", st.RxBytes}, {"rx_packets", st.RxPackets}, {"rx_errs", st.RxErrs}, {"rx_drop", st.RxDrop},
		{"tx_bytes", st.TxBytes}, {"tx_packets", st.TxPackets}, {"tx_errs", st.TxErrs}, {"tx_drop", st.TxDrop},
	} {
		if f.value >= 0 {
			s.printf("%s %s %d\n", iface, f.name, f.value)
		}
	}
	return nil
}

func cmdDomifaddr(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	source := c.Str("source")
	switch source {
	case "", driver.AddrSourceLease, driver.AddrSourceAgent, driver.AddrSourceARP:
	default:
		return fail(nil, "Unknown data source '%s'", source)
	}
	dd, err := s.devices("virDomainInterfaceAddresses")
	var ifaces []driver.InterfaceAddresses
	if err == nil {
		ifaces, err = dd.InterfaceAddresses(d.Name, source)
	}
	if err != nil {
		return fail(err, "Failed to query for interfaces addresses")
	}
	only := c.Str("interface")
	shown := []driver.InterfaceAddresses{}
	for _, i := range ifaces {
		if c.Has("interface") && i.Name != only {
			continue
		}
		shown = append(shown, i)
	}
	if c.Has("json") {
		return s.printJSON(shown)
	}
	s.extraf(" %-10s %-20s %-8s     %s\n%s\n", "Name", "MAC address", "Protocol", "Address", strings.Repeat("-", 79))
	for _, i := range shown {
		name, mac := dashIfEmpty(i.Name), i.MAC
		if len(i.Addrs) == 0 {
			if mac == "" {
				mac = "N/A"
			}
			s.printf(" %-10s %-17s    %-12s %s\n", name, mac, "N/A", "N/A")
			continue
		}
		for j, a := range i.Addrs {
			addr := fmt.Sprintf("%-12s %s/%d", a.Type, a.Addr, a.Prefix)
			if c.Has("full") || j == 0 {
				s.printf(" %-10s %-17s    %s\n", name, mac, addr)
			} else {
				s.printf(" %-10s %-17s    %s\n", "-", "-", addr)
			}
		}
	}
	return nil
}

// interfaceElement finds, in a domain's XML, the one <interface> whose MAC
// address (normalized) or target device is ref, as virsh's XPath does.
// The second result is the normalized MAC when ref is one.
func interfaceElement(xml []byte, ref string) ([]*etree.Element, string, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(xml); err != nil {
		return nil, "", err
	}
	mac := ""
	if m, err := net.ParseMAC(ref); err == nil && len(m) == 6 {
		mac = m.String()
	}
	var found []*etree.Element
	for _, e := range doc.FindElements("/domain/devices/interface") {
		addr := ""
		if me := e.SelectElement("mac"); me != nil {
			addr = me.SelectAttrValue("address", "")
		}
		dev := ""
		if te := e.SelectElement("target"); te != nil {
			dev = te.SelectAttrValue("dev", "")
		}
		if (mac != "" && addr == mac) || (dev != "" && dev == ref) {
			found = append(found, e)
		}
	}
	return found, mac, nil
}

func cmdDomifGetlink(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.DomainXML(d.Name, c.Has("config"))
	if err != nil {
		return fail(err, "")
	}
	iface := c.Str("interface")
	found, mac, err := interfaceElement(xml, iface)
	if err != nil {
		return fail(nil, "Failed to extract interface information")
	}
	switch {
	case len(found) == 0 && mac != "":
		return fail(nil, "Interface (mac: %s) not found.", mac)
	case len(found) == 0:
		return fail(nil, "Interface (dev: %s) not found.", iface)
	case len(found) > 1:
		return fail(nil, "multiple matching interfaces found")
	}
	state := "up"
	if l := found[0].SelectElement("link"); l != nil && l.SelectAttrValue("state", "") != "" {
		state = l.SelectAttrValue("state", "")
	}
	if c.Has("json") {
		return s.printJSON(map[string]string{"interface": iface, "state": state})
	}
	s.printf("%s %s", iface, state)
	return nil
}

func cmdDomifSetlink(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	iface, state := c.Str("interface"), c.Str("state")
	if state != "up" && state != "down" {
		return fail(nil, "invalid link state '%s'", state)
	}
	config := c.Has("config") || !d.Active()
	xml, err := s.conn.DomainXML(d.Name, config)
	if err != nil {
		return fail(err, "")
	}
	found, _, err := interfaceElement(xml, iface)
	if err != nil || len(found) == 0 {
		return fail(nil, "interface '%s' not found", iface)
	}
	if c.Has("print-xml") {
		e := found[0].Copy()
		link := e.SelectElement("link")
		if link == nil {
			link = e.CreateElement("link")
		}
		link.CreateAttr("state", state)
		doc := etree.NewDocument()
		doc.SetRoot(e)
		text, _ := doc.WriteToString()
		s.printf("%s", text)
		return nil
	}
	dd, err := s.devices("virDomainUpdateDeviceFlags")
	if err == nil {
		err = dd.SetInterfaceLink(d.Name, iface, state == "up", config)
	}
	if err != nil {
		return fail(err, "Failed to update interface link state")
	}
	s.extraf("Device updated successfully\n")
	return nil
}

// deviceScope reads --persistent/--config/--live/--current as virsh's
// attach-interface and detach-interface do.
func deviceScope(c *Call, d driver.DomainInfo) (driver.DeviceScope, error) {
	for _, p := range [][2]string{{"persistent", "current"}, {"current", "live"}, {"current", "config"}} {
		if err := exclusive(c, p[0], p[1]); err != nil {
			return driver.DeviceScope{}, err
		}
	}
	sc := driver.DeviceScope{ModifyScope: driver.ModifyScope{
		Config: c.Has("config") || c.Has("persistent"),
		Live:   c.Has("live") || c.Has("persistent") && d.Active(),
	}}
	sc.Flags = sc.Live || sc.Config || c.Has("current")
	return sc, nil
}

func cmdAttachInterface(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	sc, err := deviceScope(c, d)
	if err != nil {
		return err
	}
	typ, source := c.Str("type"), c.Str("source")
	var src string
	switch typ {
	case "network":
		src = fmt.Sprintf("<source network='%s'/>", source)
	case "bridge":
		src = fmt.Sprintf("<source bridge='%s'/>", source)
	case "direct":
		src = fmt.Sprintf("<source dev='%s'/>", source)
	default:
		return fail(nil, "No support for %s in command 'attach-interface'", typ)
	}
	if c.Has("print-xml") {
		var b strings.Builder
		fmt.Fprintf(&b, "<interface type='%s'", typ)
		if c.Has("managed") {
			b.WriteString(" managed='yes'")
		}
		b.WriteString(">\n  " + src + "\n")
		for _, o := range []struct{ opt, elem, attr string }{
			{"target", "target", "dev"}, {"mac", "mac", "address"}, {"script", "script", "path"},
			{"model", "model", "type"}, {"alias", "alias", "name"},
		} {
			if c.Has(o.opt) {
				fmt.Fprintf(&b, "  <%s %s='%s'/>\n", o.elem, o.attr, c.Str(o.opt))
			}
		}
		b.WriteString("</interface>\n")
		s.printf("%s", b.String())
		return nil
	}
	for _, o := range []string{"script", "alias", "inbound", "outbound", "managed", "source-mode"} {
		if c.Has(o) {
			return fail(driver.Errorf(driver.ErrConfigUnsupported, "attach-interface --%s is not supported by vsh", o), "Failed to attach interface")
		}
	}
	spec := driver.InterfaceSpec{Type: typ, Source: source, Target: c.Str("target"), MAC: c.Str("mac"), Model: c.Str("model")}
	dd, err := s.devices("virDomainAttachDeviceFlags")
	if err == nil {
		err = dd.AttachInterface(d.Name, spec, sc)
	}
	if err != nil {
		return fail(err, "Failed to attach interface")
	}
	s.extraf("Interface attached successfully\n")
	return nil
}

func cmdDetachInterface(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	sc, err := deviceScope(c, d)
	if err != nil {
		return err
	}
	xml, err := s.conn.DomainXML(d.Name, sc.Config)
	if err != nil {
		return fail(err, "")
	}
	typ, mac := c.Str("type"), c.Str("mac")
	detachFailed := errors.New("Failed to detach interface")
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(xml); err != nil {
		return fail(err, "Failed to detach interface")
	}
	var typed []*etree.Element
	for _, e := range doc.FindElements("/domain/devices/interface") {
		if e.SelectAttrValue("type", "") == typ {
			typed = append(typed, e)
		}
	}
	var pick *etree.Element
	switch {
	case len(typed) == 0 && mac != "":
		return fail(detachFailed, "No interface with MAC address %s was found", mac)
	case len(typed) == 0:
		return fail(detachFailed, "No interface found whose type is %s", typ)
	case mac != "":
		want, perr := net.ParseMAC(mac)
		for _, e := range typed {
			addr := ""
			if me := e.SelectElement("mac"); me != nil {
				addr = me.SelectAttrValue("address", "")
			}
			got, gerr := net.ParseMAC(addr)
			if perr == nil && gerr == nil && got.String() == want.String() {
				pick = e
				break
			}
		}
		if pick == nil {
			return fail(detachFailed, "No interface with MAC address %s was found", mac)
		}
	case len(typed) > 1:
		return fail(detachFailed, "Domain has %d interfaces. Please specify which one to detach using --mac", len(typed))
	default:
		pick = typed[0]
	}
	if c.Has("print-xml") {
		out := etree.NewDocument()
		out.SetRoot(pick.Copy())
		text, _ := out.WriteToString()
		s.printf("%s", text)
		return nil
	}
	key := ""
	if me := pick.SelectElement("mac"); me != nil {
		key = me.SelectAttrValue("address", "")
	}
	dd, err := s.devices("virDomainDetachDeviceFlags")
	if err == nil {
		err = dd.DetachInterface(d.Name, typ, key, sc)
	}
	if err != nil {
		return fail(err, "Failed to detach interface")
	}
	s.extraf("Interface detached successfully\n")
	return nil
}
