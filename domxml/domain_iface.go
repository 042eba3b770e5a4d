package domxml

import (
	"fmt"

	"github.com/beevik/etree"

	"vsh/schema"
)

// Libvirt's order of the children of <interface> that precede <link>.
var interfaceOrder = []string{
	"boot", "mac", "source", "vlan", "virtualport", "ip", "route", "script",
	"downscript", "backenddomain", "target", "guest", "model", "driver",
	"backend", "filterref", "tune", "teaming", "link",
}

// interfaceElement returns the <interface> whose MAC address or target
// device is key.
func (d *Domain) interfaceElement(key string) (*etree.Element, error) {
	dev := d.src.root().SelectElement("devices")
	if dev == nil {
		return nil, fmt.Errorf("no interface found matching %q", key)
	}
	want, macErr := schema.ParseMAC(key)
	for _, e := range dev.SelectElements("interface") {
		if macErr == nil {
			if got, err := schema.ParseMAC(attr(e.SelectElement("mac"), "address")); err == nil && got == want {
				return e, nil
			}
			continue
		}
		if t := attr(e.SelectElement("target"), "dev"); t != "" && t == key {
			return e, nil
		}
	}
	return nil, fmt.Errorf("no interface found matching %q", key)
}

// SetInterfaceLinkState sets <link state=...> ("up" or "down") of the
// interface whose MAC address or target device is key (domif-setlink).
func (d *Domain) SetInterfaceLinkState(key, state string) error {
	if state != "up" && state != "down" {
		return fmt.Errorf("invalid link state %q (want up or down)", state)
	}
	e, err := d.interfaceElement(key)
	if err != nil {
		return err
	}
	setAttr(ensureChild(e, "link", interfaceOrder...), "state", state)
	d.edited()
	return nil
}

// SetInterfaceTarget sets <target dev=...> of the interface with that MAC
// address: the live definition names the tap the engine opened, as
// libvirt's does.
func (d *Domain) SetInterfaceTarget(mac, dev string) error {
	e, err := d.interfaceElement(mac)
	if err != nil {
		return err
	}
	if attr(e.SelectElement("target"), "dev") == dev {
		return nil
	}
	setAttr(ensureChild(e, "target", before(interfaceOrder, "target")...), "dev", dev)
	d.edited()
	return nil
}

// SetBalloonStatsPeriod sets <memballoon><stats period=...> (dommemstat
// --period), with libvirt's error when there is no balloon.
func (d *Domain) SetBalloonStatsPeriod(seconds int) error {
	dev := d.src.root().SelectElement("devices")
	var mb *etree.Element
	if dev != nil {
		mb = dev.SelectElement("memballoon")
	}
	if mb == nil || attr(mb, "model") == "none" {
		return fmt.Errorf("No memory balloon device configured, can not set the collection period")
	}
	if seconds < 0 {
		return fmt.Errorf("invalid statistics period %d", seconds)
	}
	setAttr(ensureChild(mb, "stats", "alias"), "period", fmt.Sprint(seconds))
	d.edited()
	return nil
}
