package local

import (
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

// fillNetwork gives a network its generated defaults: UUID, a bridge name
// not in usedBridges, a MAC.
func fillNetwork(n *domxml.Network, usedBridges []string) error {
	if _, err := n.FillDefaults(usedBridges); err != nil {
		return xmlError(err)
	}
	return nil
}

// fillPool gives a pool definition its generated defaults (UUID).
func fillPool(p *domxml.Pool) error {
	if _, err := p.FillDefaults(); err != nil {
		return xmlError(err)
	}
	return nil
}
