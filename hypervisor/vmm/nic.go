package vmm

import (
	"fmt"
	"net"

	"vsh/hypervisor/network"
	"vsh/hypervisor/virtio"
)

// addNICs gives each NIC a tap (attached to its bridge, if any) and a
// virtio-net device.
func (b *built) addNICs() error {
	for i, nic := range b.cfg.NICs {
		mac, err := net.ParseMAC(nic.MAC)
		if err != nil {
			return fmt.Errorf("interface %d: MAC address %q: %w", i, nic.MAC, err)
		}
		tap, err := network.OpenNIC(nic.TapName, mac, nic.Bridge)
		if err != nil {
			return fmt.Errorf("interface %s: %w", nic.MAC, err)
		}
		var cfg virtio.NetConfig
		copy(cfg.MAC[:], mac)
		cfg.VnetHdr = tap.VnetHdr()
		cfg.LinkDown = !nic.LinkUp
		dev := virtio.NewNet(tap, cfg)
		// Closers run in order: the transport (stopping the device's
		// goroutines) before the tap it reads.
		if err := b.addVirtio(fmt.Sprintf("virtio-net%d", i), dev); err != nil {
			tap.Close()
			return err
		}
		b.closers = append(b.closers, tap)
		b.nets = append(b.nets, netDevice{tap: tap, dev: dev})
	}
	return nil
}

// netDevice is a NIC as the running machine knows it.
type netDevice struct {
	tap *network.Tap
	dev *virtio.Net
}
