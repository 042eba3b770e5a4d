package testdriver

import (
	"strings"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// The definition helpers live in package driver, shared with the other
// driver; these names keep this package's call sites short.
var (
	xmlError     = driver.XMLError
	parseDomain  = driver.ParseDomain
	parseNetwork = driver.ParseNetwork
	parsePool    = driver.ParsePool
	parseVolume  = driver.ParseVolume
	vcpus        = driver.VCPUs
	withID       = driver.WithID
	normUUID     = driver.NormUUID
)

// withNetworkUUID gives a network definition without a UUID a generated
// one, as libvirt's test driver does; unlike the local driver it assigns
// no bridge name or MAC. The UUID goes right after <name>, in the file's
// own layout.
func withNetworkUUID(n *domxml.Network, file string, data []byte) (*domxml.Network, error) {
	if n.UUID != "" {
		return n, nil
	}
	s := string(data)
	i := strings.Index(s, "</name>")
	if i < 0 {
		return n, nil
	}
	i += len("</name>")
	indent := "\n  "
	if j := strings.LastIndex(s[:i], "\n"); j >= 0 {
		k := j + 1
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		indent = "\n" + s[j+1:k]
	}
	out, err := domxml.ParseNetwork(file, []byte(s[:i]+indent+"<uuid>"+domxml.NewUUID()+"</uuid>"+s[i:]), false)
	if err != nil {
		return nil, xmlError(err)
	}
	return out, nil
}

// fillPool gives a pool definition its generated defaults (UUID).
func fillPool(p *domxml.Pool) error {
	if _, err := p.FillDefaults(); err != nil {
		return xmlError(err)
	}
	return nil
}
