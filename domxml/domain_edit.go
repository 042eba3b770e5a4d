package domxml

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"vsh/schema"
)

// Libvirt's order of the top-level domain elements, used to place elements
// vsh adds where virsh would write them.
var domainOrder = []string{
	"name", "uuid", "genid", "title", "description", "metadata", "maxMemory",
	"memory", "currentMemory", "blkiotune", "memtune", "memoryBacking", "vcpu",
	"vcpus", "iothreads", "iothreadids", "cputune", "numatune", "resource",
	"sysinfo", "bootloader", "bootloader_args", "os", "idmap", "features", "cpu",
	"clock", "on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm",
	"perf", "devices",
}

// before returns the tags that precede tag in order.
func before(order []string, tag string) []string {
	for i, t := range order {
		if t == tag {
			return order[:i:i]
		}
	}
	return order
}

// Libvirt's order of device elements.
var deviceOrder = []string{
	"emulator", "disk", "controller", "lease", "filesystem", "interface",
	"smartcard", "serial", "parallel", "console", "channel", "input", "tpm",
	"graphics", "sound", "audio", "video", "hostdev", "redirdev", "redirfilter",
	"hub", "watchdog", "memballoon", "rng", "panic", "shmem", "memory",
	"iommu", "vsock", "crypto",
}

// NewUUID returns a random (version 4) UUID in canonical form.
func NewUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return schema.FormatUUID(u)
}

// NewMAC returns a random address in QEMU/KVM's locally administered
// 52:54:00 range, as libvirt generates.
func NewMAC() string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

// FillDefaults adds what libvirt generates on define: a <uuid> when absent
// and a <mac address='52:54:00:...'/> for each interface without one; and
// it lowers a <currentMemory> above <memory> to <memory>, as libvirt does.
// The new elements go where libvirt puts them, indented like the file;
// nothing else changes. It reports whether the document changed.
func (d *Domain) FillDefaults() (bool, error) {
	r := d.src.root()
	changed := false
	if d.MemoryKiB > 0 && d.currentMemoryElementKiB > d.MemoryKiB {
		d.setKiB("currentMemory", d.MemoryKiB)
		changed = true
	}
	if r.SelectElement("uuid") == nil {
		e := etree.NewElement("uuid")
		e.SetText(NewUUID())
		insertChild(r, e, before(domainOrder, "uuid")...)
		changed = true
	}
	if dev := r.SelectElement("devices"); dev != nil {
		used := map[string]bool{}
		for _, i := range d.Devices.Interfaces {
			used[i.MAC] = true
		}
		for _, ie := range dev.SelectElements("interface") {
			if ie.SelectElement("mac") != nil {
				continue
			}
			m := NewMAC()
			for used[m] {
				m = NewMAC()
			}
			used[m] = true
			me := etree.NewElement("mac")
			me.CreateAttr("address", m)
			insertChild(ie, me)
			changed = true
		}
	}
	if changed {
		d.edited()
	}
	return changed, nil
}

// edited marks the document changed and refreshes the typed fields.
func (d *Domain) edited() {
	d.src.dirty = true
	d.load()
}

func (d *Domain) setTop(tag, text string) *etree.Element {
	e := ensureChild(d.src.root(), tag, before(domainOrder, tag)...)
	setText(e, text)
	return e
}

func (d *Domain) removeTop(tag string) {
	if e := d.src.root().SelectElement(tag); e != nil {
		removeElement(e)
	}
}

// SetName renames the domain.
func (d *Domain) SetName(name string) {
	d.setTop("name", name)
	d.edited()
}

// SetUUID sets <uuid>, in canonical form when it parses.
func (d *Domain) SetUUID(uuid string) {
	if u, err := schema.ParseUUID(uuid); err == nil {
		uuid = schema.FormatUUID(u)
	}
	d.setTop("uuid", uuid)
	d.edited()
}

// SetTitle sets <title>; an empty title removes the element.
func (d *Domain) SetTitle(title string) {
	if title == "" {
		d.removeTop("title")
	} else {
		d.setTop("title", title)
	}
	d.edited()
}

// SetDescription sets <description>; empty removes the element.
func (d *Domain) SetDescription(desc string) {
	if desc == "" {
		d.removeTop("description")
	} else {
		d.setTop("description", desc)
	}
	d.edited()
}

func (d *Domain) setKiB(tag string, kib uint64) *etree.Element {
	e := d.setTop(tag, strconv.FormatUint(kib, 10))
	setAttr(e, "unit", "KiB")
	return e
}

// SetMemoryKiB sets <memory> (virsh setmaxmem). Like libvirt, a
// <currentMemory> above the new size is lowered to it.
func (d *Domain) SetMemoryKiB(kib uint64) {
	d.setKiB("memory", kib)
	if e := d.src.root().SelectElement("currentMemory"); e != nil && d.CurrentMemoryKiB > kib {
		d.setKiB("currentMemory", kib)
	}
	d.edited()
}

// SetCurrentMemoryKiB sets <currentMemory> (virsh setmem --config).
func (d *Domain) SetCurrentMemoryKiB(kib uint64) {
	d.setKiB("currentMemory", kib)
	d.edited()
}

// SetMaxMemoryKiB sets <maxMemory> (the memory hotplug limit), keeping its
// slots or using 16 when it is new; 0 removes it.
func (d *Domain) SetMaxMemoryKiB(kib uint64) {
	if kib == 0 {
		d.removeTop("maxMemory")
	} else {
		e := d.setKiB("maxMemory", kib)
		if e.SelectAttr("slots") == nil {
			e.CreateAttr("slots", "16")
		}
	}
	d.edited()
}

// SetVCPUs sets <vcpu>count</vcpu> and its current attribute (omitted when
// current equals count or is zero).
func (d *Domain) SetVCPUs(count, current int) {
	e := d.setTop("vcpu", strconv.Itoa(count))
	if current <= 0 || current == count {
		e.RemoveAttr("current")
	} else {
		setAttr(e, "current", strconv.Itoa(current))
	}
	d.edited()
}

// devicesElement returns <devices>, creating it when absent.
func (d *Domain) devicesElement() *etree.Element {
	return ensureChild(d.src.root(), "devices", before(domainOrder, "devices")...)
}

// AddInterface appends an <interface> built from i (virsh attach-interface
// --config). A MAC is generated when i.MAC is empty.
func (d *Domain) AddInterface(i Interface) error {
	switch i.Type {
	case "network":
		if i.SourceNetwork == "" {
			return fmt.Errorf("interface of type network needs a source network")
		}
	case "bridge":
		if i.SourceBridge == "" {
			return fmt.Errorf("interface of type bridge needs a source bridge")
		}
	case "ethernet", "user":
	default:
		return fmt.Errorf("unsupported interface type %q (want network, bridge, ethernet or user)", i.Type)
	}
	if i.MAC == "" {
		i.MAC = NewMAC()
	} else {
		m, err := schema.ParseMAC(i.MAC)
		if err != nil {
			return fmt.Errorf("interface MAC %q: %w", i.MAC, err)
		}
		i.MAC = formatMAC(m)
	}
	for _, x := range d.Devices.Interfaces {
		if strings.EqualFold(x.MAC, i.MAC) {
			return fmt.Errorf("an interface with MAC address %s already exists", i.MAC)
		}
	}
	e := etree.NewElement("interface")
	e.CreateAttr("type", i.Type)
	e.CreateElement("mac").CreateAttr("address", i.MAC)
	switch {
	case i.SourceNetwork != "":
		e.CreateElement("source").CreateAttr("network", i.SourceNetwork)
	case i.SourceBridge != "":
		e.CreateElement("source").CreateAttr("bridge", i.SourceBridge)
	}
	if i.TargetDev != "" {
		e.CreateElement("target").CreateAttr("dev", i.TargetDev)
	}
	if i.Model != "" {
		e.CreateElement("model").CreateAttr("type", i.Model)
	}
	if i.LinkState != "" {
		e.CreateElement("link").CreateAttr("state", i.LinkState)
	}
	dev := d.devicesElement()
	indentNew(dev, e)
	insertChild(dev, e, append(before(deviceOrder, "interface"), "interface")...)
	d.edited()
	return nil
}

// indentNew lays out a new element's children on lines of their own, two
// spaces deeper than the element, unless parent is written on one line.
func indentNew(parent, e *etree.Element) {
	if !multiline(parent) && !onlyWhitespace(parent) {
		return
	}
	e.IndentWithSettings(&etree.IndentSettings{Spaces: 2})
	indentSubtree(e, childIndent(parent))
}

// indentSubtree shifts the line breaks inside e (indented as if at column
// 0) to start at prefix.
func indentSubtree(e *etree.Element, prefix string) {
	for _, t := range e.Child {
		switch c := t.(type) {
		case *etree.CharData:
			if strings.TrimSpace(c.Data) == "" && strings.Contains(c.Data, "\n") {
				c.Data = strings.ReplaceAll(c.Data, "\n", "\n"+prefix)
			}
		case *etree.Element:
			indentSubtree(c, prefix)
		}
	}
}

// RemoveInterface removes the interface whose MAC address is key, or, when
// key is not a MAC address, the only interface of type key.
func (d *Domain) RemoveInterface(key string) error {
	dev := d.src.root().SelectElement("devices")
	var ifs []*etree.Element
	if dev != nil {
		ifs = dev.SelectElements("interface")
	}
	var match []*etree.Element
	if m, err := schema.ParseMAC(key); err == nil {
		want := formatMAC(m)
		for _, e := range ifs {
			if got, err := schema.ParseMAC(attr(e.SelectElement("mac"), "address")); err == nil && formatMAC(got) == want {
				match = append(match, e)
			}
		}
	} else {
		for _, e := range ifs {
			if attr(e, "type") == key {
				match = append(match, e)
			}
		}
	}
	switch len(match) {
	case 0:
		return fmt.Errorf("no interface found matching %q", key)
	case 1:
		removeElement(match[0])
		d.edited()
		return nil
	default:
		return fmt.Errorf("domain has %d interfaces matching %q; use a MAC address to pick one", len(match), key)
	}
}

// AddDisk appends a <disk> built from disk (virsh attach-disk --config).
// Type defaults from the source (file, block or volume), Device to "disk",
// and the target bus to virtio; the target name must be free.
func (d *Domain) AddDisk(disk Disk) error {
	if disk.TargetDev == "" {
		return fmt.Errorf("disk needs a target device name (vda, vdb, ...)")
	}
	for _, x := range d.Devices.Disks {
		if x.TargetDev == disk.TargetDev {
			return fmt.Errorf("target %s already exists", disk.TargetDev)
		}
	}
	if disk.Type == "" {
		switch {
		case disk.SourceDev != "":
			disk.Type = "block"
		case disk.SourcePool != "":
			disk.Type = "volume"
		default:
			disk.Type = "file"
		}
	}
	if disk.Device == "" {
		disk.Device = "disk"
	}
	if disk.TargetBus == "" && disk.Device == "disk" {
		disk.TargetBus = "virtio"
	}
	e := etree.NewElement("disk")
	e.CreateAttr("type", disk.Type)
	e.CreateAttr("device", disk.Device)
	if disk.DriverName != "" || disk.DriverType != "" || disk.Cache != "" || disk.Discard != "" {
		dr := e.CreateElement("driver")
		name := disk.DriverName
		if name == "" {
			name = "qemu"
		}
		dr.CreateAttr("name", name)
		for _, kv := range [][2]string{{"type", disk.DriverType}, {"cache", disk.Cache}, {"discard", disk.Discard}} {
			if kv[1] != "" {
				dr.CreateAttr(kv[0], kv[1])
			}
		}
	}
	src := etree.NewElement("source")
	switch disk.Type {
	case "file":
		src.CreateAttr("file", disk.SourceFile)
	case "block":
		src.CreateAttr("dev", disk.SourceDev)
	case "volume":
		src.CreateAttr("pool", disk.SourcePool)
		src.CreateAttr("volume", disk.SourceVolume)
	default:
		return fmt.Errorf("unsupported disk type %q (want file, block or volume)", disk.Type)
	}
	if len(src.Attr) > 0 && src.Attr[0].Value != "" {
		e.AddChild(src)
	} else if disk.Device == "disk" {
		return fmt.Errorf("disk %s needs a source", disk.TargetDev)
	}
	t := e.CreateElement("target")
	t.CreateAttr("dev", disk.TargetDev)
	if disk.TargetBus != "" {
		t.CreateAttr("bus", disk.TargetBus)
	}
	if disk.ReadOnly {
		e.CreateElement("readonly")
	}
	if disk.Serial != "" {
		e.CreateElement("serial").SetText(disk.Serial)
	}
	dev := d.devicesElement()
	indentNew(dev, e)
	insertChild(dev, e, append(before(deviceOrder, "disk"), "disk")...)
	d.edited()
	return nil
}

// RemoveDisk removes the disk with the given target device name (vda) or
// source path (virsh detach-disk --config).
func (d *Domain) RemoveDisk(target string) error {
	dev := d.src.root().SelectElement("devices")
	if dev != nil {
		for _, e := range dev.SelectElements("disk") {
			x := parseDisk(e)
			if x.TargetDev == target || target != "" && (x.SourceFile == target || x.SourceDev == target) {
				removeElement(e)
				d.edited()
				return nil
			}
		}
	}
	return fmt.Errorf("no disk found whose target or source is %q", target)
}
