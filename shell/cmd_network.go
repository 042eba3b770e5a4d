package shell

import (
	"sort"
	"strings"

	"vsh/hypervisor/driver"
)

func init() {
	for name, h := range map[string]handler{
		"net-define": cmdNetDefine, "net-create": cmdNetCreate, "net-undefine": cmdNetUndefine,
		"net-start": cmdNetStart, "net-destroy": cmdNetDestroy, "net-list": cmdNetList,
		"net-info": cmdNetInfo, "net-dumpxml": cmdNetDumpxml, "net-autostart": cmdNetAutostart,
		"net-uuid": cmdNetUUID, "net-name": cmdNetName, "net-dhcp-leases": cmdNetLeases,
		"net-edit": cmdNetEdit,
	} {
		handlers[name] = h
	}
}

// lookupNetwork resolves the <network> option by name or UUID.
func (s *Shell) lookupNetwork(c *Call) (driver.NetworkInfo, error) {
	ref := c.Str("network")
	n, err := s.conn.LookupNetwork(ref)
	if err != nil {
		return n, fail(err, "failed to get network '%s'", ref)
	}
	return n, nil
}

func cmdNetDefine(s *Shell, c *Call) error {
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	n, err := s.conn.DefineNetwork(data, file, true)
	if err != nil {
		return fail(err, "Failed to define network from %s", file)
	}
	s.extraf("Network %s defined from %s\n", n.Name, file)
	return nil
}

func cmdNetCreate(s *Shell, c *Call) error {
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	n, err := s.conn.CreateNetwork(data, file, true)
	if err != nil {
		return fail(err, "Failed to create network from %s", file)
	}
	s.extraf("Network %s created from %s\n", n.Name, file)
	return nil
}

func simpleNetOp(s *Shell, c *Call, op func(string) error, failText, okText string) error {
	n, err := s.lookupNetwork(c)
	if err != nil {
		return err
	}
	if err := op(n.Name); err != nil {
		return fail(err, failText, n.Name)
	}
	s.extraf(okText+"\n", n.Name)
	return nil
}

func cmdNetUndefine(s *Shell, c *Call) error {
	return simpleNetOp(s, c, s.conn.UndefineNetwork, "Failed to undefine network %s", "Network %s has been undefined")
}

func cmdNetStart(s *Shell, c *Call) error {
	return simpleNetOp(s, c, s.conn.StartNetwork, "Failed to start network %s", "Network %s started")
}

func cmdNetDestroy(s *Shell, c *Call) error {
	return simpleNetOp(s, c, s.conn.DestroyNetwork, "Failed to destroy network %s", "Network %s destroyed")
}

func cmdNetAutostart(s *Shell, c *Call) error {
	on := !c.Has("disable")
	if on {
		return simpleNetOp(s, c, func(n string) error { return s.conn.SetNetworkAutostart(n, true) },
			"failed to mark network %s as autostarted", "Network %s marked as autostarted")
	}
	return simpleNetOp(s, c, func(n string) error { return s.conn.SetNetworkAutostart(n, false) },
		"failed to unmark network %s as autostarted", "Network %s unmarked as autostarted")
}

func activeText(b bool) string {
	if b {
		return "active"
	}
	return "inactive"
}

func cmdNetList(s *Shell, c *Call) error {
	nets, err := s.conn.ListNetworks()
	if err != nil {
		return fail(err, "Failed to list networks")
	}
	active, inactive := true, false
	if c.Has("inactive") {
		active, inactive = false, true
	}
	if c.Has("all") {
		active, inactive = true, true
	}
	var out []driver.NetworkInfo
	for _, n := range nets {
		if n.Active && !active || !n.Active && !inactive {
			continue
		}
		if c.Has("persistent") && !c.Has("transient") && !n.Persistent ||
			c.Has("transient") && !c.Has("persistent") && n.Persistent {
			continue
		}
		if c.Has("autostart") && !c.Has("no-autostart") && !n.Autostart ||
			c.Has("no-autostart") && !c.Has("autostart") && n.Autostart {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if c.Has("json") {
		if out == nil {
			out = []driver.NetworkInfo{}
		}
		return s.printJSON(out)
	}
	if !c.Has("table") && (c.Has("name") || c.Has("uuid")) {
		for _, n := range out {
			var f []string
			if c.Has("uuid") {
				f = append(f, n.UUID)
			}
			if c.Has("name") {
				f = append(f, n.Name)
			}
			s.printf("%s\n", strings.Join(f, " "))
		}
		return nil
	}
	rows := make([][]string, 0, len(out))
	for _, n := range out {
		rows = append(rows, []string{n.Name, activeText(n.Active), yesNo(n.Autostart), yesNo(n.Persistent)})
	}
	s.printf("%s", table([]string{"Name", "State", "Autostart", "Persistent"}, rows, s.Quiet))
	return nil
}

func cmdNetInfo(s *Shell, c *Call) error {
	n, err := s.lookupNetwork(c)
	if err != nil {
		return err
	}
	if c.Has("json") {
		return s.printJSON(n)
	}
	p := []string{"Name", n.Name, "UUID", n.UUID, "Active", yesNo(n.Active),
		"Persistent", yesNo(n.Persistent), "Autostart", yesNo(n.Autostart)}
	if n.Bridge != "" {
		p = append(p, "Bridge", n.Bridge)
	}
	s.printf("%s", kv(15, p...))
	return nil
}

func cmdNetDumpxml(s *Shell, c *Call) error {
	n, err := s.lookupNetwork(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.NetworkXML(n.Name, c.Has("inactive"))
	if err != nil {
		return fail(err, "")
	}
	s.printf("%s\n", trimNL(string(xml)))
	return nil
}

func cmdNetUUID(s *Shell, c *Call) error {
	n, err := s.lookupNetwork(c)
	if err != nil {
		return err
	}
	return s.printValue(c, "uuid", n.UUID)
}

func cmdNetName(s *Shell, c *Call) error {
	ref := c.Str("network")
	n, err := s.conn.LookupNetwork(ref)
	if err != nil {
		return fail(err, "failed to get network '%s'", ref)
	}
	return s.printValue(c, "name", n.Name)
}

func cmdNetLeases(s *Shell, c *Call) error {
	n, err := s.lookupNetwork(c)
	if err != nil {
		return err
	}
	leases, err := s.conn.NetworkLeases(n.Name, c.Str("mac"))
	if err != nil {
		return fail(err, "Failed to get leases info for %s", n.Name)
	}
	sort.SliceStable(leases, func(i, j int) bool { return leases[i].MAC < leases[j].MAC })
	if c.Has("json") {
		if leases == nil {
			leases = []driver.DHCPLease{}
		}
		return s.printJSON(leases)
	}
	rows := make([][]string, 0, len(leases))
	for _, l := range leases {
		rows = append(rows, []string{l.Expiry.Local().Format("2006-01-02 15:04:05"), l.MAC, l.Protocol,
			l.Address, dashIfEmpty(l.Hostname), dashIfEmpty(l.ClientID)})
	}
	s.printf("%s", table([]string{"Expiry Time", "MAC address", "Protocol", "IP address", "Hostname", "Client ID or DUID"}, rows, s.Quiet))
	return nil
}

func dashIfEmpty(v string) string {
	if v == "" {
		return "-"
	}
	return v
}
