package domxml

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"vsh/hypervisor"
	"vsh/schema"
)

// Unsupported is a valid element the vsh engine cannot run.
type Unsupported struct {
	Pos     schema.Pos
	Element string // e.g. "<graphics type='spice'>"
	Reason  string
}

// String renders "vm.xml:40:5: <graphics type='spice'>: not supported by the vsh engine".
func (u Unsupported) String() string {
	return u.Pos.String() + ": " + u.Element + ": " + u.Reason
}

// UnsupportedError is the error a caller returns when it refuses to start a
// domain because of unsupported elements; it lists all of them.
type UnsupportedError []Unsupported

func (l UnsupportedError) Error() string {
	s := make([]string, len(l))
	for i, u := range l {
		s[i] = u.String()
	}
	return strings.Join(s, "\n")
}

// VolumeResolver maps a storage volume (<source pool= volume=>) to its path
// and format (raw or qcow2).
type VolumeResolver func(pool, vol string) (path, format string, err error)

const notSupported = "not supported by the vsh engine"

// ToConfig converts the domain to the engine's configuration. Every element
// the engine cannot run is returned in the Unsupported list with its
// position; harmless metadata (title, description, metadata, acpi/apic
// features, a UTC clock, ...) is not listed. Disks of type 'volume' are
// listed as unsupported because no resolver is given; use ToConfigWith. The
// error reports values that cannot be converted at all.
func (d *Domain) ToConfig() (*hypervisor.Config, []Unsupported, error) {
	return d.ToConfigWith(nil)
}

// ToConfigWith is ToConfig resolving volume disks with resolve.
func (d *Domain) ToConfigWith(resolve VolumeResolver) (*hypervisor.Config, []Unsupported, error) {
	c := &converter{d: d, resolve: resolve}
	cfg := c.convert()
	if len(c.errs) > 0 {
		return nil, c.unsup, c.errs
	}
	return cfg, c.unsup, nil
}

type converter struct {
	d       *Domain
	resolve VolumeResolver
	unsup   []Unsupported
	errs    schema.ErrorList
}

func (c *converter) no(e *etree.Element, reason string) {
	if reason == "" {
		reason = notSupported
	}
	c.unsup = append(c.unsup, Unsupported{Pos: c.d.Pos(e), Element: describe(e), Reason: reason})
}

// onlyAttrs lists each attribute of e not in allowed as unsupported.
func (c *converter) onlyAttrs(e *etree.Element, allowed ...string) {
	if e == nil {
		return
	}
next:
	for _, a := range e.Attr {
		for _, k := range allowed {
			if a.FullKey() == k {
				continue next
			}
		}
		c.unsup = append(c.unsup, Unsupported{Pos: c.d.src.doc.AttrPos(e, a.FullKey()),
			Element: "<" + e.Tag + " " + a.FullKey() + "='" + a.Value + "'>",
			Reason:  "attribute " + a.FullKey() + " is " + notSupported})
	}
}

func (c *converter) fail(e *etree.Element, format string, args ...any) {
	c.errs = append(c.errs, &schema.Error{Pos: c.d.Pos(e), Msg: fmt.Sprintf(format, args...)})
}

// Top-level elements with no effect on how the engine runs the guest.
var harmlessTop = map[string]bool{
	"name": true, "uuid": true, "genid": true, "title": true, "description": true,
	"metadata": true, "memory": true, "currentMemory": true, "vcpu": true,
	"os": true, "features": true, "cpu": true, "clock": true, "on_poweroff": true,
	"on_reboot": true, "on_crash": true, "memoryBacking": true, "cputune": true,
	"devices": true,
}

func (c *converter) convert() *hypervisor.Config {
	d := c.d
	r := d.src.root()
	cfg := &hypervisor.Config{
		Name:               d.Name,
		UUID:               d.UUID,
		MemoryBytes:        d.MemoryKiB * 1024,
		CurrentMemoryBytes: d.CurrentMemoryKiB * 1024,
		VCPUs:              d.VCPU.Current,
	}
	if r.SelectElement("vcpu") == nil {
		cfg.VCPUs = 1 // libvirt's default
	}
	if cfg.CurrentMemoryBytes == cfg.MemoryBytes {
		cfg.CurrentMemoryBytes = 0
	}
	if d.Type != "kvm" {
		c.no(r, fmt.Sprintf("domain type '%s' is not supported; the vsh engine runs type 'kvm'", d.Type))
	}
	for _, e := range r.ChildElements() {
		if !harmlessTop[e.Tag] {
			c.no(e, "")
		}
	}
	c.vcpu(r.SelectElement("vcpu"), cfg)
	c.os(r.SelectElement("os"), cfg)
	c.features(r.SelectElement("features"))
	c.cpu(r.SelectElement("cpu"), cfg)
	c.clock(r.SelectElement("clock"))
	c.lifecycle(r, cfg)
	c.memoryBacking(r.SelectElement("memoryBacking"), cfg)
	c.cputune(r.SelectElement("cputune"), cfg)
	if dev := r.SelectElement("devices"); dev != nil {
		c.devices(dev, cfg)
	}
	sort.SliceStable(c.unsup, func(i, j int) bool {
		a, b := c.unsup[i].Pos, c.unsup[j].Pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	return cfg
}

func (c *converter) vcpu(e *etree.Element, cfg *hypervisor.Config) {
	if e == nil {
		return
	}
	if p := attr(e, "placement"); p == "auto" {
		c.no(e, "automatic (numad) vCPU placement is not supported by the vsh engine")
	}
	c.onlyAttrs(e, "placement", "cpuset", "current")
	if s := attr(e, "cpuset"); s != "" {
		set, err := ParseCPUSet(s)
		if err != nil {
			c.fail(e, "<vcpu cpuset='%s'>: %v", s, err)
		}
		cfg.CPUSet = set
	}
}

func (c *converter) os(e *etree.Element, cfg *hypervisor.Config) {
	d := c.d
	if e == nil {
		c.no(c.d.src.root(), "no <os> element: the vsh engine needs direct kernel boot (<os><kernel>)")
		return
	}
	if d.OS.Type != "hvm" {
		c.no(e.SelectElement("type"), fmt.Sprintf("OS type '%s' is not supported; the vsh engine runs 'hvm' guests", d.OS.Type))
	}
	if a := d.OS.Arch; a != "" && a != "x86_64" {
		c.no(e.SelectElement("type"), fmt.Sprintf("architecture '%s' is not supported; the vsh engine runs x86_64 guests", a))
	}
	c.onlyAttrs(e) // firmware='efi' and the like
	if d.OS.Kernel == "" {
		c.no(e, "BIOS/UEFI firmware boot is not supported by the vsh engine; use direct kernel boot (<kernel>, <initrd>, <cmdline>)")
	}
	for _, ch := range e.ChildElements() {
		switch ch.Tag {
		case "type", "kernel", "initrd", "cmdline", "boot":
			// <boot dev> orders firmware boot devices; with a kernel
			// there is no firmware, as in QEMU.
		default:
			c.no(ch, "")
		}
	}
	cfg.Boot = hypervisor.Boot{Kernel: d.OS.Kernel, Initrd: d.OS.Initrd, Cmdline: d.OS.Cmdline}
}

func (c *converter) features(e *etree.Element) {
	if e == nil {
		return
	}
	for _, f := range e.ChildElements() {
		switch f.Tag {
		case "acpi", "apic", "pae":
			// The engine always provides ACPI tables, a local APIC and PAE.
		case "vmport", "pmu":
			if attr(f, "state") != "off" {
				c.no(f, "")
			}
		default:
			c.no(f, "")
		}
	}
}

func (c *converter) cpu(e *etree.Element, cfg *hypervisor.Config) {
	if e == nil {
		return
	}
	switch m := attr(e, "mode"); m {
	case "host-passthrough", "host-model", "maximum":
	case "", "custom":
		if e.SelectElement("model") != nil {
			c.no(e.SelectElement("model"), "named CPU models are not supported; the vsh engine passes the host CPU through")
		}
	default:
		c.no(e, "")
	}
	for _, ch := range e.ChildElements() {
		switch ch.Tag {
		case "topology", "model":
		case "numa":
			c.no(ch, "guest NUMA topology is not supported by the vsh engine")
		default:
			c.no(ch, "")
		}
	}
	if t := c.d.CPU.Topology; t != nil {
		cfg.Topology = hypervisor.Topology{Sockets: t.Sockets, Dies: t.Dies, Cores: t.Cores, Threads: t.Threads}
	}
}

func (c *converter) clock(e *etree.Element) {
	if e == nil {
		return
	}
	if o := attr(e, "offset"); o != "" && o != "utc" {
		c.no(e, fmt.Sprintf("clock offset '%s' is not supported; the vsh engine keeps the guest clock in UTC", o))
	}
	for _, t := range e.ChildElements() {
		if t.Tag == "timer" && attr(t, "present") == "no" && attr(t, "name") != "kvmclock" {
			continue // The engine provides no such timer anyway.
		}
		c.no(t, "")
	}
}

func (c *converter) lifecycle(r *etree.Element, cfg *hypervisor.Config) {
	set := func(tag string, dst *hypervisor.LifecycleAction, dflt hypervisor.LifecycleAction) {
		e := r.SelectElement(tag)
		if e == nil {
			*dst = dflt
			return
		}
		a := hypervisor.LifecycleAction(strings.TrimSpace(e.Text()))
		switch a {
		case hypervisor.ActionDestroy, hypervisor.ActionRestart, hypervisor.ActionPreserve:
			*dst = a
		default:
			c.no(e, fmt.Sprintf("action '%s' is not supported by the vsh engine (destroy, restart and preserve are)", a))
			*dst = dflt
		}
	}
	set("on_poweroff", &cfg.OnPoweroff, hypervisor.ActionDestroy)
	set("on_reboot", &cfg.OnReboot, hypervisor.ActionRestart)
	set("on_crash", &cfg.OnCrash, hypervisor.ActionDestroy)
}

func (c *converter) memoryBacking(e *etree.Element, cfg *hypervisor.Config) {
	if e == nil {
		return
	}
	for _, ch := range e.ChildElements() {
		switch ch.Tag {
		case "hugepages":
			cfg.HugePages = true
			for _, p := range ch.SelectElements("page") {
				if attr(p, "nodeset") != "" {
					c.no(p, "per-NUMA-node huge pages are not supported by the vsh engine")
				}
			}
		case "nosharepages":
			cfg.NoSharePages = true
		default:
			c.no(ch, "")
		}
	}
}

func (c *converter) cputune(e *etree.Element, cfg *hypervisor.Config) {
	if e == nil {
		return
	}
	for _, ch := range e.ChildElements() {
		if ch.Tag != "vcpupin" {
			c.no(ch, "")
			continue
		}
		n, err := strconv.Atoi(attr(ch, "vcpu"))
		if err != nil {
			c.fail(ch, "<vcpupin>: invalid vcpu %q", attr(ch, "vcpu"))
			continue
		}
		set, err := ParseCPUSet(attr(ch, "cpuset"))
		if err != nil {
			c.fail(ch, "<vcpupin cpuset='%s'>: %v", attr(ch, "cpuset"), err)
			continue
		}
		if cfg.VCPUPins == nil {
			cfg.VCPUPins = map[int][]int{}
		}
		cfg.VCPUPins[n] = set
	}
}

func (c *converter) devices(dev *etree.Element, cfg *hypervisor.Config) {
	for _, e := range dev.ChildElements() {
		switch e.Tag {
		case "emulator":
			// The engine is built in; the emulator path is kept for
			// libvirt compatibility only.
		case "disk":
			c.disk(e, cfg)
		case "interface":
			c.iface(e, cfg)
		case "serial":
			c.serial(e, cfg)
		case "console":
			c.console(e, cfg)
		case "rng":
			c.rng(e, cfg)
		case "memballoon":
			c.balloon(e, cfg)
		case "vsock":
			c.vsock(e, cfg)
		case "controller":
			c.controller(e)
		case "input":
			// libvirt adds a PS/2 mouse and keyboard to every x86 guest;
			// the engine's i8042 provides them.
			if attr(e, "bus") != "ps2" {
				c.no(e, "")
			}
		default:
			c.no(e, "")
		}
	}
}

func (c *converter) disk(e *etree.Element, cfg *hypervisor.Config) {
	d := parseDisk(e)
	if d.Device != "disk" {
		c.no(e, fmt.Sprintf("disk device '%s' is not supported; the vsh engine provides virtio disks", d.Device))
		return
	}
	if b := d.TargetBus; b != "" && b != "virtio" {
		c.no(e.SelectElement("target"), fmt.Sprintf("disk bus '%s' is not supported; the vsh engine provides virtio disks", b))
		return
	}
	out := hypervisor.Disk{ReadOnly: d.ReadOnly, Serial: d.Serial, Target: d.TargetDev, Discard: d.Discard == "unmap"}
	format := d.DriverType
	switch d.Type {
	case "file":
		out.Path = d.SourceFile
	case "block":
		out.Path = d.SourceDev
	case "volume":
		if c.resolve == nil {
			c.no(e, "volume disks need the storage pool to be resolved")
			return
		}
		p, f, err := c.resolve(d.SourcePool, d.SourceVolume)
		if err != nil {
			c.fail(e, "disk %s: volume '%s' in pool '%s': %v", d.TargetDev, d.SourceVolume, d.SourcePool, err)
			return
		}
		out.Path = p
		if format == "" {
			format = f
		}
	default:
		c.no(e, fmt.Sprintf("disk type '%s' is not supported; the vsh engine opens files, block devices and pool volumes", d.Type))
		return
	}
	if out.Path == "" {
		c.no(e, "a disk without a source (an empty drive) is not supported by the vsh engine")
		return
	}
	switch format {
	case "", "raw":
		out.Format = hypervisor.FormatRaw
	case "qcow2":
		out.Format = hypervisor.FormatQcow2
	default:
		c.no(e.SelectElement("driver"), fmt.Sprintf("disk format '%s' is not supported; the vsh engine reads raw and qcow2", format))
		return
	}
	switch d.Cache {
	case "", "none", "writethrough", "writeback", "directsync", "unsafe":
		out.Cache = hypervisor.CacheMode(d.Cache)
	default:
		c.no(e.SelectElement("driver"), fmt.Sprintf("cache mode '%s' is not supported", d.Cache))
	}
	for _, ch := range e.ChildElements() {
		switch ch.Tag {
		case "driver":
			c.onlyAttrs(ch, "name", "type", "cache", "discard")
		case "source":
			c.onlyAttrs(ch, "file", "dev", "pool", "volume")
			for _, sc := range ch.ChildElements() {
				c.no(sc, "")
			}
		case "target":
			c.onlyAttrs(ch, "dev", "bus")
		case "readonly", "serial", "alias", "address", "boot":
		default:
			c.no(ch, "")
		}
	}
	c.onlyAttrs(e, "type", "device")
	cfg.Disks = append(cfg.Disks, out)
}

func (c *converter) iface(e *etree.Element, cfg *hypervisor.Config) {
	l := &loader{s: &c.d.src}
	i := parseInterface(l, e)
	n := hypervisor.NIC{MAC: i.MAC, Backend: hypervisor.NICTap, TapName: i.TargetDev, LinkUp: i.LinkState != "down"}
	switch i.Type {
	case "network":
		n.Network = i.SourceNetwork
	case "bridge":
		n.Bridge = i.SourceBridge
	case "ethernet":
	default:
		c.no(e, fmt.Sprintf("interface type '%s' is not supported; the vsh engine connects network, bridge and ethernet interfaces", i.Type))
		return
	}
	if i.Model != "" && i.Model != "virtio" {
		c.no(e.SelectElement("model"), fmt.Sprintf("NIC model '%s' is not supported; the vsh engine provides virtio-net", i.Model))
		return
	}
	for _, ch := range e.ChildElements() {
		switch ch.Tag {
		case "model":
			c.onlyAttrs(ch, "type")
		case "source":
			c.onlyAttrs(ch, "network", "bridge")
		case "mac", "target", "link", "alias", "address":
		default:
			c.no(ch, "")
		}
	}
	cfg.NICs = append(cfg.NICs, n)
}

func (c *converter) serial(e *etree.Element, cfg *hypervisor.Config) {
	s := hypervisor.Serial{Index: len(cfg.Serials)}
	if t := e.SelectElement("target"); t != nil && attr(t, "port") != "" {
		if p, err := strconv.Atoi(attr(t, "port")); err == nil {
			s.Index = p
		}
	}
	switch attr(e, "type") {
	case "pty":
	case "file":
		s.LogFile = attr(e.SelectElement("source"), "path")
	default:
		c.no(e, fmt.Sprintf("serial type '%s' is not supported; the vsh engine provides pty and file serial ports", attr(e, "type")))
		return
	}
	if lf := attr(e.SelectElement("log"), "file"); lf != "" {
		s.LogFile = lf
	}
	if tt := attr(e.SelectElement("target"), "type"); tt != "" && tt != "isa-serial" {
		c.no(e.SelectElement("target"), fmt.Sprintf("serial target '%s' is not supported; the vsh engine provides isa-serial ports", tt))
		return
	}
	cfg.Serials = append(cfg.Serials, s)
}

func (c *converter) console(e *etree.Element, cfg *hypervisor.Config) {
	tt := attr(e.SelectElement("target"), "type")
	switch tt {
	case "", "serial":
		// The first serial port seen as a console, as libvirt does.
		if attr(e, "type") != "pty" {
			c.no(e, fmt.Sprintf("console type '%s' is not supported; the vsh engine provides pty consoles", attr(e, "type")))
		}
	case "virtio":
		if attr(e, "type") != "pty" {
			c.no(e, fmt.Sprintf("console type '%s' is not supported; the vsh engine provides pty consoles", attr(e, "type")))
			return
		}
		cfg.Consoles = append(cfg.Consoles, hypervisor.Console{Index: len(cfg.Consoles)})
	default:
		c.no(e.SelectElement("target"), fmt.Sprintf("console target '%s' is not supported", tt))
	}
}

func (c *converter) rng(e *etree.Element, cfg *hypervisor.Config) {
	if m := attr(e, "model"); m != "virtio" {
		c.no(e, "")
		return
	}
	b := e.SelectElement("backend")
	switch attr(b, "model") {
	case "builtin":
	case "random":
		if dev := strings.TrimSpace(b.Text()); dev != "" && dev != "/dev/urandom" && dev != "/dev/random" {
			c.no(b, fmt.Sprintf("RNG source '%s' is not supported; the vsh engine uses getrandom", dev))
			return
		}
	default:
		c.no(b, "")
		return
	}
	r := hypervisor.RNG{}
	if rate := e.SelectElement("rate"); rate != nil {
		r.RateBytes, _ = strconv.Atoi(attr(rate, "bytes"))
		r.RatePeriodMs, _ = strconv.Atoi(attr(rate, "period"))
		if r.RatePeriodMs == 0 {
			r.RatePeriodMs = 1000 // libvirt's default period
		}
	}
	cfg.RNGs = append(cfg.RNGs, r)
}

func (c *converter) balloon(e *etree.Element, cfg *hypervisor.Config) {
	switch attr(e, "model") {
	case "none":
		return
	case "virtio":
	default:
		c.no(e, "")
		return
	}
	c.onlyAttrs(e, "model", "autodeflate", "freePageReporting")
	for _, ch := range e.ChildElements() {
		switch ch.Tag {
		case "stats", "alias", "address":
		default:
			c.no(ch, "")
		}
	}
	b := c.d.Devices.MemBalloon
	cfg.Balloon = &hypervisor.Balloon{StatsPeriodSeconds: b.StatsPeriodSeconds, FreePageReporting: b.FreePageReporting, DeflateOnOOM: b.DeflateOnOOM}
}

func (c *converter) vsock(e *etree.Element, cfg *hypervisor.Config) {
	if m := attr(e, "model"); m != "" && m != "virtio" {
		c.no(e, "")
		return
	}
	v := c.d.Devices.Vsock
	cfg.Vsock = &hypervisor.Vsock{CID: v.CID} // CID 0 with auto='yes': the engine picks one
}

func (c *converter) controller(e *etree.Element) {
	t, m := attr(e, "type"), attr(e, "model")
	switch {
	case t == "pci" && (m == "" || m == "pci-root" || m == "pcie-root"):
		// Implicit root bus libvirt adds; the engine uses virtio-mmio.
	case t == "virtio-serial":
		// Carries virtio consoles.
	case t == "usb" && m == "none":
	default:
		c.no(e, "")
	}
}

// ParseCPUSet parses libvirt's cpuset syntax ("0-3,^2,6") into a sorted
// list of CPU numbers.
func ParseCPUSet(s string) ([]int, error) {
	in := map[int]bool{}
	var excl []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		neg := strings.HasPrefix(part, "^")
		part = strings.TrimPrefix(part, "^")
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 4095 {
			return nil, fmt.Errorf("invalid CPU %q in cpuset %q", lo, s)
		}
		b := a
		if isRange {
			if neg {
				return nil, fmt.Errorf("cannot exclude a range in cpuset %q", s)
			}
			b, err = strconv.Atoi(hi)
			if err != nil || b < a || b > 4095 {
				return nil, fmt.Errorf("invalid CPU range %q in cpuset %q", part, s)
			}
		}
		for i := a; i <= b; i++ {
			if neg {
				excl = append(excl, i)
			} else {
				in[i] = true
			}
		}
	}
	for _, i := range excl {
		delete(in, i)
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("cpuset %q selects no CPU", s)
	}
	out := make([]int, 0, len(in))
	for i := range in {
		out = append(out, i)
	}
	sort.Ints(out)
	return out, nil
}
