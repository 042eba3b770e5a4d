package network_test

import (
	"net"

	"vsh/hypervisor/network"
	"vsh/hypervisor/virtio"
)

// The VMM builder's part for one NIC: open the tap (attached to the
// network's or host's bridge, none for type='ethernet'), put a virtio-net
// device on it, and later close the transport before the tap.
func ExampleOpenNIC() {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	tap, err := network.OpenNIC("", mac, "vshbr0")
	if err != nil {
		return // e.g. "open tap vnet%d: needs root (CAP_NET_ADMIN)"
	}
	var cfg virtio.NetConfig
	copy(cfg.MAC[:], mac)
	cfg.VnetHdr = tap.VnetHdr()
	dev := virtio.NewNet(tap, cfg)
	// Register virtio.NewMMIO(dev, mem, irq) on the bus; domif-setlink
	// calls dev.SetLink, domifstat reads dev.Stats(), and tap.Name() is
	// the <target dev=> to report.
	_ = dev
	tap.Close()
}
