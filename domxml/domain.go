package domxml

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"vsh/schema"
)

// Domain is a parsed domain definition. It keeps the schema.Document so that
// XML writes the user's file back; the typed fields mirror the document and
// the Set and Add methods change both.
type Domain struct {
	Type        string // kvm, qemu, test, ...
	Name        string
	UUID        string // canonical lower-case dashed form; "" when absent
	Title       string
	Description string

	MemoryKiB        uint64
	CurrentMemoryKiB uint64 // equals MemoryKiB when <currentMemory> is absent, zero or above it
	// currentMemoryElementKiB is <currentMemory> as written, for
	// FillDefaults to lower.
	currentMemoryElementKiB uint64
	MaxMemoryKiB            uint64 // <maxMemory>; 0 when absent
	MaxMemorySlots          int

	VCPU     VCPU
	OS       OS
	Features []string // child element names of <features>, in order
	CPU      *CPU
	Clock    Clock

	OnPoweroff, OnReboot, OnCrash string

	MemoryBacking MemoryBacking
	NUMATune      *NUMATune
	CPUTune       *CPUTune
	Devices       Devices

	src source
}

// VCPU is <vcpu placement= current= cpuset=>count</vcpu>.
type VCPU struct {
	Count     int
	Current   int // equals Count when the attribute is absent
	Placement string
	CPUSet    string
}

// OS is the <os> element.
type OS struct {
	Type, Arch, Machine     string
	Kernel, Initrd, Cmdline string
	Loader                  string
	Boot                    []string // <boot dev=...> in order
}

// CPU is the <cpu> element.
type CPU struct {
	Mode, Match, Model string
	Topology           *Topology
	NUMA               []NUMACell
}

// Topology is <cpu><topology>.
type Topology struct {
	Sockets, Dies, Cores, Threads int
}

// NUMACell is <cpu><numa><cell>.
type NUMACell struct {
	ID        int
	CPUs      string
	MemoryKiB uint64
}

// Clock is <clock offset=...> with its timers.
type Clock struct {
	Offset string
	Timers []Timer
}

// Timer is <clock><timer>.
type Timer struct {
	Name, TickPolicy, Present string
}

// MemoryBacking is <memoryBacking>.
type MemoryBacking struct {
	HugePages    bool
	Pages        []HugePage
	NoSharePages bool
	Locked       bool
}

// HugePage is <memoryBacking><hugepages><page>.
type HugePage struct {
	SizeKiB uint64
	Nodeset string
}

// NUMATune is <numatune>.
type NUMATune struct {
	Mode, Nodeset string // <memory mode= nodeset=>
	MemNodes      []MemNode
}

// MemNode is <numatune><memnode>.
type MemNode struct {
	CellID        int
	Mode, Nodeset string
}

// CPUTune is <cputune>.
type CPUTune struct {
	VCPUPins       []VCPUPin
	EmulatorCPUSet string
}

// VCPUPin is <cputune><vcpupin vcpu= cpuset=>.
type VCPUPin struct {
	VCPU   int
	CPUSet string
}

// Devices is <devices>.
type Devices struct {
	Emulator    string
	Disks       []Disk
	Interfaces  []Interface
	Serials     []Char
	Consoles    []Char
	RNGs        []RNG
	MemBalloon  *MemBalloon
	Vsock       *Vsock
	Controllers []Controller
	Hostdevs    []Hostdev
}

// Disk is <devices><disk>.
type Disk struct {
	Type, Device                                    string // file, block, volume, network; disk, cdrom, ...
	SourceFile, SourceDev, SourcePool, SourceVolume string
	DriverName, DriverType, Cache, Discard          string
	TargetDev, TargetBus                            string
	ReadOnly                                        bool
	Serial                                          string
}

// Interface is <devices><interface>.
type Interface struct {
	Type                                        string // network, bridge, ethernet, user, ...
	MAC, SourceNetwork, SourceBridge, TargetDev string
	Model                                       string
	LinkState                                   string // up, down or ""
}

// Char is a <serial> or <console>.
type Char struct {
	Type       string // pty, file, stdio, ...
	SourcePath string
	TargetType string // serial: isa-serial, ...; console: serial, virtio
	TargetPort int
	LogFile    string
}

// RNG is <devices><rng>.
type RNG struct {
	Model         string
	BackendModel  string // random, builtin, egd
	BackendDevice string
	RateBytes     int
	RatePeriodMs  int
}

// MemBalloon is <devices><memballoon>.
type MemBalloon struct {
	Model              string
	StatsPeriodSeconds int
	FreePageReporting  bool
	DeflateOnOOM       bool
}

// Vsock is <devices><vsock>.
type Vsock struct {
	Model   string
	CID     uint32
	AutoCID bool
}

// Controller is <devices><controller>.
type Controller struct {
	Type, Model string
	Index       int
}

// Hostdev is <devices><hostdev>.
type Hostdev struct {
	Mode, Type string
}

// ParseDomain parses and checks a domain definition. With validate false the
// structural schema pass is skipped, but values the model needs (units,
// UUID, MAC addresses, numbers) are still checked. Errors are
// schema.ErrorList values naming file:line:col.
func ParseDomain(file string, data []byte, validate bool) (*Domain, error) {
	doc, err := parseKind(file, data, schema.KindDomain, validate)
	if err != nil {
		return nil, err
	}
	d := &Domain{src: newSource(doc, data)}
	if errs := d.load(); len(errs) > 0 {
		return nil, errs
	}
	return d, nil
}

// semanticChecker is implemented by a schema.Document that can run the
// semantic checks alone (without the structural pass).
type semanticChecker interface {
	Semantics() schema.ErrorList
}

// parseKind parses data, checks the root element and optionally validates.
func parseKind(file string, data []byte, kind schema.Kind, validate bool) (*schema.Document, error) {
	// The document keeps its source for positions; give it a copy the
	// caller cannot change.
	data = append([]byte(nil), data...)
	doc, err := schema.ParseKind(file, data, kind)
	if err != nil {
		return nil, err
	}
	if validate {
		if errs := doc.Validate(); len(errs) > 0 {
			return nil, errs
		}
	} else if s, ok := any(doc).(semanticChecker); ok {
		if errs := s.Semantics(); len(errs) > 0 {
			return nil, errs
		}
	}
	return doc, nil
}

// loader collects the errors found while reading values into the model.
type loader struct {
	s    *source
	errs schema.ErrorList
}

func (l *loader) fail(e *etree.Element, format string, args ...any) {
	l.errs = append(l.errs, &schema.Error{Pos: l.s.pos(e), Msg: fmt.Sprintf(format, args...)})
}

// integer reads an optional integer attribute (or text when key is "").
func (l *loader) integer(e *etree.Element, key string) int {
	if e == nil {
		return 0
	}
	v := ""
	if key == "" {
		v = strings.TrimSpace(e.Text())
	} else {
		v = e.SelectAttrValue(key, "")
	}
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 0, 32)
	if err != nil || n < 0 {
		what := "<" + e.Tag + ">"
		if key != "" {
			what = "attribute " + key + " of " + what
		}
		l.fail(e, "%s: invalid number %q", what, v)
		return 0
	}
	return int(n)
}

// scaled reads <tag unit=...>value</tag> in the given default unit and
// returns it in units of div (1024 for KiB, 1 for bytes).
func (l *loader) scaled(e *etree.Element, valueAttr, defaultUnit string, div uint64) uint64 {
	if e == nil {
		return 0
	}
	v := strings.TrimSpace(e.Text())
	if valueAttr != "" {
		v = e.SelectAttrValue(valueAttr, "")
	}
	if v == "" {
		return 0
	}
	n, err := schema.ParseScaled(v, e.SelectAttrValue("unit", ""), defaultUnit, 0)
	if err != nil {
		l.fail(e, "<%s>: %v", e.Tag, err)
		return 0
	}
	return n / div
}

func (l *loader) uuid(e *etree.Element) string {
	if e == nil {
		return ""
	}
	u, err := schema.ParseUUID(strings.TrimSpace(e.Text()))
	if err != nil {
		l.fail(e, "<uuid>: %v", err)
		return ""
	}
	return schema.FormatUUID(u)
}

func (l *loader) mac(e *etree.Element) string {
	v := attr(e, "address")
	if v == "" {
		return ""
	}
	m, err := schema.ParseMAC(v)
	if err != nil {
		l.fail(e, "<mac address='%s'>: %v", v, err)
		return ""
	}
	return formatMAC(m)
}

func formatMAC(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// load fills the typed fields from the document.
func (d *Domain) load() schema.ErrorList {
	l := &loader{s: &d.src}
	r := d.src.root()
	*d = Domain{src: d.src}
	d.Type = attr(r, "type")
	d.Name = childText(r, "name")
	d.UUID = l.uuid(r.SelectElement("uuid"))
	d.Title = childText(r, "title")
	d.Description = childText(r, "description")
	d.MemoryKiB = l.scaled(r.SelectElement("memory"), "", "KiB", 1024)
	d.CurrentMemoryKiB = d.MemoryKiB
	if e := r.SelectElement("currentMemory"); e != nil {
		d.currentMemoryElementKiB = l.scaled(e, "", "KiB", 1024)
		// libvirt lowers a balloon target above the memory size.
		if c := d.currentMemoryElementKiB; c > 0 && (c < d.MemoryKiB || d.MemoryKiB == 0) {
			d.CurrentMemoryKiB = c
		}
	}
	if e := r.SelectElement("maxMemory"); e != nil {
		d.MaxMemoryKiB = l.scaled(e, "", "KiB", 1024)
		d.MaxMemorySlots = l.integer(e, "slots")
	}
	if e := r.SelectElement("vcpu"); e != nil {
		d.VCPU = VCPU{Count: l.integer(e, ""), Placement: attr(e, "placement"), CPUSet: attr(e, "cpuset")}
		d.VCPU.Current = d.VCPU.Count
		if attr(e, "current") != "" {
			d.VCPU.Current = l.integer(e, "current")
		}
	}
	if os := r.SelectElement("os"); os != nil {
		t := os.SelectElement("type")
		d.OS = OS{Type: childText(os, "type"), Arch: attr(t, "arch"), Machine: attr(t, "machine"),
			Kernel: childText(os, "kernel"), Initrd: childText(os, "initrd"), Cmdline: childText(os, "cmdline"),
			Loader: childText(os, "loader")}
		for _, b := range os.SelectElements("boot") {
			d.OS.Boot = append(d.OS.Boot, attr(b, "dev"))
		}
	}
	if f := r.SelectElement("features"); f != nil {
		for _, c := range f.ChildElements() {
			d.Features = append(d.Features, c.Tag)
		}
	}
	if c := r.SelectElement("cpu"); c != nil {
		d.CPU = &CPU{Mode: attr(c, "mode"), Match: attr(c, "match"), Model: childText(c, "model")}
		if t := c.SelectElement("topology"); t != nil {
			d.CPU.Topology = &Topology{Sockets: l.integer(t, "sockets"), Dies: l.integer(t, "dies"),
				Cores: l.integer(t, "cores"), Threads: l.integer(t, "threads")}
		}
		if n := c.SelectElement("numa"); n != nil {
			for _, cell := range n.SelectElements("cell") {
				d.CPU.NUMA = append(d.CPU.NUMA, NUMACell{ID: l.integer(cell, "id"), CPUs: attr(cell, "cpus"),
					MemoryKiB: l.scaled(cell, "memory", "KiB", 1024)})
			}
		}
	}
	if c := r.SelectElement("clock"); c != nil {
		d.Clock.Offset = attr(c, "offset")
		for _, t := range c.SelectElements("timer") {
			d.Clock.Timers = append(d.Clock.Timers, Timer{Name: attr(t, "name"), TickPolicy: attr(t, "tickpolicy"), Present: attr(t, "present")})
		}
	}
	d.OnPoweroff = childText(r, "on_poweroff")
	d.OnReboot = childText(r, "on_reboot")
	d.OnCrash = childText(r, "on_crash")
	if mb := r.SelectElement("memoryBacking"); mb != nil {
		if hp := mb.SelectElement("hugepages"); hp != nil {
			d.MemoryBacking.HugePages = true
			for _, p := range hp.SelectElements("page") {
				d.MemoryBacking.Pages = append(d.MemoryBacking.Pages, HugePage{SizeKiB: l.scaled(p, "size", "KiB", 1024), Nodeset: attr(p, "nodeset")})
			}
		}
		d.MemoryBacking.NoSharePages = mb.SelectElement("nosharepages") != nil
		d.MemoryBacking.Locked = mb.SelectElement("locked") != nil
	}
	if nt := r.SelectElement("numatune"); nt != nil {
		d.NUMATune = &NUMATune{}
		if m := nt.SelectElement("memory"); m != nil {
			d.NUMATune.Mode, d.NUMATune.Nodeset = attr(m, "mode"), attr(m, "nodeset")
		}
		for _, m := range nt.SelectElements("memnode") {
			d.NUMATune.MemNodes = append(d.NUMATune.MemNodes, MemNode{CellID: l.integer(m, "cellid"), Mode: attr(m, "mode"), Nodeset: attr(m, "nodeset")})
		}
	}
	if ct := r.SelectElement("cputune"); ct != nil {
		d.CPUTune = &CPUTune{EmulatorCPUSet: attr(ct.SelectElement("emulatorpin"), "cpuset")}
		for _, p := range ct.SelectElements("vcpupin") {
			d.CPUTune.VCPUPins = append(d.CPUTune.VCPUPins, VCPUPin{VCPU: l.integer(p, "vcpu"), CPUSet: attr(p, "cpuset")})
		}
	}
	if dev := r.SelectElement("devices"); dev != nil {
		d.loadDevices(l, dev)
	}
	return l.errs
}

func (d *Domain) loadDevices(l *loader, dev *etree.Element) {
	ds := &d.Devices
	for _, e := range dev.ChildElements() {
		switch e.Tag {
		case "emulator":
			ds.Emulator = strings.TrimSpace(e.Text())
		case "disk":
			ds.Disks = append(ds.Disks, parseDisk(e))
		case "interface":
			ds.Interfaces = append(ds.Interfaces, parseInterface(l, e))
		case "serial", "console":
			c := Char{Type: attr(e, "type"), SourcePath: attr(e.SelectElement("source"), "path")}
			if t := e.SelectElement("target"); t != nil {
				c.TargetType = attr(t, "type")
				c.TargetPort = l.integer(t, "port")
			}
			c.LogFile = attr(e.SelectElement("log"), "file")
			if e.Tag == "serial" {
				ds.Serials = append(ds.Serials, c)
			} else {
				ds.Consoles = append(ds.Consoles, c)
			}
		case "rng":
			r := RNG{Model: attr(e, "model")}
			if b := e.SelectElement("backend"); b != nil {
				r.BackendModel, r.BackendDevice = attr(b, "model"), strings.TrimSpace(b.Text())
			}
			if rate := e.SelectElement("rate"); rate != nil {
				r.RateBytes, r.RatePeriodMs = l.integer(rate, "bytes"), l.integer(rate, "period")
			}
			ds.RNGs = append(ds.RNGs, r)
		case "memballoon":
			b := &MemBalloon{Model: attr(e, "model"), FreePageReporting: attr(e, "freePageReporting") == "on",
				DeflateOnOOM: attr(e, "autodeflate") == "on"}
			b.StatsPeriodSeconds = l.integer(e.SelectElement("stats"), "period")
			ds.MemBalloon = b
		case "vsock":
			v := &Vsock{Model: attr(e, "model")}
			if c := e.SelectElement("cid"); c != nil {
				v.AutoCID = attr(c, "auto") == "yes"
				if s := attr(c, "address"); s != "" {
					n, err := strconv.ParseUint(s, 0, 32)
					if err != nil {
						l.fail(c, "<cid address='%s'>: invalid number", s)
					}
					v.CID = uint32(n)
				}
			}
			ds.Vsock = v
		case "controller":
			ds.Controllers = append(ds.Controllers, Controller{Type: attr(e, "type"), Model: attr(e, "model"), Index: l.integer(e, "index")})
		case "hostdev":
			ds.Hostdevs = append(ds.Hostdevs, Hostdev{Mode: attr(e, "mode"), Type: attr(e, "type")})
		}
	}
}

func parseDisk(e *etree.Element) Disk {
	d := Disk{Type: attr(e, "type"), Device: attr(e, "device")}
	if d.Device == "" {
		d.Device = "disk"
	}
	if s := e.SelectElement("source"); s != nil {
		d.SourceFile, d.SourceDev = attr(s, "file"), attr(s, "dev")
		d.SourcePool, d.SourceVolume = attr(s, "pool"), attr(s, "volume")
	}
	if dr := e.SelectElement("driver"); dr != nil {
		d.DriverName, d.DriverType = attr(dr, "name"), attr(dr, "type")
		d.Cache, d.Discard = attr(dr, "cache"), attr(dr, "discard")
	}
	if t := e.SelectElement("target"); t != nil {
		d.TargetDev, d.TargetBus = attr(t, "dev"), attr(t, "bus")
	}
	d.ReadOnly = e.SelectElement("readonly") != nil
	d.Serial = childText(e, "serial")
	return d
}

func parseInterface(l *loader, e *etree.Element) Interface {
	i := Interface{Type: attr(e, "type"), MAC: l.mac(e.SelectElement("mac"))}
	if s := e.SelectElement("source"); s != nil {
		i.SourceNetwork, i.SourceBridge = attr(s, "network"), attr(s, "bridge")
	}
	i.TargetDev = attr(e.SelectElement("target"), "dev")
	i.Model = attr(e.SelectElement("model"), "type")
	i.LinkState = attr(e.SelectElement("link"), "state")
	return i
}

// XML returns the definition: the user's document with only what vsh
// changed or added (FillDefaults, the Set methods) differing.
func (d *Domain) XML() []byte { return d.src.xml() }

// Pos returns the position of an element of the document.
func (d *Domain) Pos(e *etree.Element) schema.Pos { return d.src.pos(e) }

// Document returns the underlying document (read-only use: changing it
// directly bypasses the typed fields).
func (d *Domain) Document() *schema.Document { return d.src.doc }

// Clone returns an independent copy of d.
func (d *Domain) Clone() *Domain {
	c, err := cloneSource(&d.src)
	if err != nil {
		// The document re-renders from a tree that parsed; fall back to a
		// copy of the tree (positions of the copy are unknown).
		c = copySource(&d.src)
	}
	n := &Domain{src: c}
	n.load()
	return n
}

// cloneSource re-parses the current document so the clone has its own tree
// with positions, while remembering the user's original bytes.
func cloneSource(s *source) (source, error) {
	cur := s.xml()
	doc, err := schema.Parse(s.doc.File, cur)
	if err != nil {
		return source{}, err
	}
	c := newSource(doc, cur)
	if s.dirty {
		// Keep diffing against the user's original so later writes still
		// preserve its lines.
		c.orig, c.base, c.dirty = append([]byte(nil), s.orig...), append([]byte(nil), s.base...), true
		c.base = s.base
	}
	return c, nil
}

func copySource(s *source) source {
	c := *s
	c.doc = &schema.Document{Doc: s.doc.Doc.Copy(), File: s.doc.File, Kind: s.doc.Kind}
	return c
}
