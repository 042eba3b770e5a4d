package shell

import (
	"vsh/domxml"
)

func init() { handlers["domiflist"] = cmdDomiflist }

// jsonInterface is the JSON form of a domiflist row (see JSON.md).
type jsonInterface struct {
	Interface string `json:"interface"`
	Type      string `json:"type"`
	Source    string `json:"source"`
	Model     string `json:"model"`
	MAC       string `json:"mac"`
}

// cmdDomiflist lists a domain's network interfaces from its XML, as
// virsh does on the client side.
func cmdDomiflist(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.DomainXML(d.Name, c.Has("inactive"))
	if err != nil {
		return fail(err, "")
	}
	dom, err := domxml.ParseDomain(d.Name+".xml", xml, false)
	if err != nil {
		return fail(err, "Failed to parse the XML of domain '%s'", d.Name)
	}
	rows := [][]string{}
	list := []jsonInterface{}
	for _, i := range dom.Devices.Interfaces {
		source := ""
		switch {
		case i.SourceNetwork != "":
			source = i.SourceNetwork
		case i.SourceBridge != "":
			source = i.SourceBridge
		}
		list = append(list, jsonInterface{i.TargetDev, i.Type, source, i.Model, i.MAC})
		rows = append(rows, []string{dashIfEmpty(i.TargetDev), i.Type, dashIfEmpty(source), dashIfEmpty(i.Model), i.MAC})
	}
	if c.Has("json") {
		return s.printJSON(list)
	}
	s.printf("%s", table([]string{"Interface", "Type", "Source", "Model", "MAC"}, rows, s.Quiet))
	return nil
}
