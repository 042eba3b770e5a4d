package domxml

import (
	"strconv"
	"strings"

	"github.com/beevik/etree"

	"vsh/schema"
)

// Pool is a parsed storage pool definition.
type Pool struct {
	Type, Name, UUID string
	// Sizes as written in the document (pool-dumpxml of a running pool).
	CapacityBytes, AllocationBytes, AvailableBytes uint64
	Source                                         PoolSource
	Target                                         PoolTarget

	src source
}

// PoolSource is <pool><source>.
type PoolSource struct {
	Host   string // <host name=>
	Dir    string // <dir path=>
	Device string // <device path=>
	Format string // <format type=>
	Name   string // <name> (volume group of a logical pool)
}

// PoolTarget is <pool><target>.
type PoolTarget struct {
	Path        string
	Permissions *Permissions
}

// Permissions is <permissions>; Owner and Group are -1 when absent.
type Permissions struct {
	Mode         string
	Owner, Group int
	Label        string
}

// Volume is a parsed storage volume definition.
type Volume struct {
	Type, Name, Key                string
	CapacityBytes, AllocationBytes uint64
	Target                         VolTarget
	BackingStore                   *BackingStore

	src source
}

// VolTarget is <volume><target>.
type VolTarget struct {
	Path, Format string
	Permissions  *Permissions
}

// BackingStore is <volume><backingStore>.
type BackingStore struct {
	Path, Format string
}

var (
	poolOrder   = []string{"name", "uuid", "capacity", "allocation", "available", "features", "source", "target"}
	volumeOrder = []string{"name", "key", "source", "capacity", "allocation", "physical", "target", "backingStore"}
	targetOrder = []string{"path", "format", "permissions", "timestamps", "compat", "nocow", "clusterSize", "features"}
)

func (l *loader) permissions(e *etree.Element) *Permissions {
	if e == nil {
		return nil
	}
	p := &Permissions{Mode: childText(e, "mode"), Owner: -1, Group: -1, Label: childText(e, "label")}
	num := func(tag string) int {
		c := e.SelectElement(tag)
		if c == nil {
			return -1
		}
		v := strings.TrimSpace(c.Text())
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n > 1<<32-1 {
			l.fail(c, "<%s>: invalid id %q", tag, v)
			return -1
		}
		return int(n)
	}
	p.Owner, p.Group = num("owner"), num("group")
	return p
}

// ParsePool parses and checks a storage pool definition; see ParseDomain.
func ParsePool(file string, data []byte, validate bool) (*Pool, error) {
	doc, err := parseKind(file, data, schema.KindPool, validate)
	if err != nil {
		return nil, err
	}
	p := &Pool{src: newSource(doc, data)}
	if errs := p.load(); len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

func (p *Pool) load() schema.ErrorList {
	l := &loader{s: &p.src}
	r := p.src.root()
	*p = Pool{src: p.src}
	p.Type = attr(r, "type")
	p.Name = childText(r, "name")
	p.UUID = l.uuid(r.SelectElement("uuid"))
	p.CapacityBytes = l.scaled(r.SelectElement("capacity"), "", "bytes", 1)
	p.AllocationBytes = l.scaled(r.SelectElement("allocation"), "", "bytes", 1)
	p.AvailableBytes = l.scaled(r.SelectElement("available"), "", "bytes", 1)
	if s := r.SelectElement("source"); s != nil {
		p.Source = PoolSource{Host: attr(s.SelectElement("host"), "name"), Dir: attr(s.SelectElement("dir"), "path"),
			Device: attr(s.SelectElement("device"), "path"), Format: attr(s.SelectElement("format"), "type"),
			Name: childText(s, "name")}
	}
	if t := r.SelectElement("target"); t != nil {
		p.Target = PoolTarget{Path: childText(t, "path"), Permissions: l.permissions(t.SelectElement("permissions"))}
	}
	return l.errs
}

// NewPool builds a pool definition in virsh's layout (pool-define-as).
func NewPool(name, typ string, src PoolSource, target string) *Pool {
	r := etree.NewElement("pool")
	r.CreateAttr("type", typ)
	r.CreateElement("name").SetText(name)
	if src != (PoolSource{}) {
		s := r.CreateElement("source")
		if src.Host != "" {
			s.CreateElement("host").CreateAttr("name", src.Host)
		}
		if src.Device != "" {
			s.CreateElement("device").CreateAttr("path", src.Device)
		}
		if src.Dir != "" {
			s.CreateElement("dir").CreateAttr("path", src.Dir)
		}
		if src.Name != "" {
			s.CreateElement("name").SetText(src.Name)
		}
		if src.Format != "" {
			s.CreateElement("format").CreateAttr("type", src.Format)
		}
	}
	if target != "" {
		r.CreateElement("target").CreateElement("path").SetText(target)
	}
	p := &Pool{src: newBuiltSource(name+".xml", schema.KindPool, r)}
	p.load()
	return p
}

// XML returns the definition with only what vsh changed differing from the
// user's file.
func (p *Pool) XML() []byte { return p.src.xml() }

// Pos returns the position of an element of the document.
func (p *Pool) Pos(e *etree.Element) schema.Pos { return p.src.pos(e) }

// Document returns the underlying document.
func (p *Pool) Document() *schema.Document { return p.src.doc }

// Clone returns an independent copy of p.
func (p *Pool) Clone() *Pool {
	c, err := cloneSource(&p.src)
	if err != nil {
		c = copySource(&p.src)
	}
	out := &Pool{src: c}
	out.load()
	return out
}

// FillDefaults adds a <uuid> when absent and reports whether it did.
func (p *Pool) FillDefaults() (bool, error) {
	r := p.src.root()
	if r.SelectElement("uuid") != nil {
		return false, nil
	}
	e := etree.NewElement("uuid")
	e.SetText(NewUUID())
	insertChild(r, e, before(poolOrder, "uuid")...)
	p.src.dirty = true
	p.load()
	return true, nil
}

// setBytes sets <tag unit='bytes'>n</tag> under parent in the given order.
func setBytes(parent *etree.Element, order []string, tag string, n uint64) {
	e := ensureChild(parent, tag, before(order, tag)...)
	setText(e, strconv.FormatUint(n, 10))
	setAttr(e, "unit", "bytes")
}

// SetSizes records the pool's sizes as <capacity>, <allocation> and
// <available> in bytes, as pool-dumpxml shows them.
func (p *Pool) SetSizes(capacity, allocation, available uint64) {
	r := p.src.root()
	setBytes(r, poolOrder, "capacity", capacity)
	setBytes(r, poolOrder, "allocation", allocation)
	setBytes(r, poolOrder, "available", available)
	p.src.dirty = true
	p.load()
}

// ParseVolume parses and checks a storage volume definition; see
// ParseDomain.
func ParseVolume(file string, data []byte, validate bool) (*Volume, error) {
	doc, err := parseKind(file, data, schema.KindVolume, validate)
	if err != nil {
		return nil, err
	}
	v := &Volume{src: newSource(doc, data)}
	if errs := v.load(); len(errs) > 0 {
		return nil, errs
	}
	return v, nil
}

func (v *Volume) load() schema.ErrorList {
	l := &loader{s: &v.src}
	r := v.src.root()
	*v = Volume{src: v.src}
	v.Type = attr(r, "type")
	v.Name = childText(r, "name")
	v.Key = childText(r, "key")
	v.CapacityBytes = l.scaled(r.SelectElement("capacity"), "", "bytes", 1)
	v.AllocationBytes = l.scaled(r.SelectElement("allocation"), "", "bytes", 1)
	if t := r.SelectElement("target"); t != nil {
		v.Target = VolTarget{Path: childText(t, "path"), Format: attr(t.SelectElement("format"), "type"),
			Permissions: l.permissions(t.SelectElement("permissions"))}
	}
	if b := r.SelectElement("backingStore"); b != nil {
		v.BackingStore = &BackingStore{Path: childText(b, "path"), Format: attr(b.SelectElement("format"), "type")}
	}
	return l.errs
}

// NewVolume builds a volume definition in virsh's layout (vol-create-as,
// vol-dumpxml). path may be empty until the pool assigns one.
func NewVolume(name string, capacity, allocation uint64, format, path string) *Volume {
	r := etree.NewElement("volume")
	r.CreateAttr("type", "file")
	r.CreateElement("name").SetText(name)
	if path != "" {
		r.CreateElement("key").SetText(path)
	}
	c := r.CreateElement("capacity")
	c.CreateAttr("unit", "bytes")
	c.SetText(strconv.FormatUint(capacity, 10))
	a := r.CreateElement("allocation")
	a.CreateAttr("unit", "bytes")
	a.SetText(strconv.FormatUint(allocation, 10))
	t := r.CreateElement("target")
	if path != "" {
		t.CreateElement("path").SetText(path)
	}
	if format != "" {
		t.CreateElement("format").CreateAttr("type", format)
	}
	// An empty <target/> stays: the schema requires the element.
	v := &Volume{src: newBuiltSource(name+".xml", schema.KindVolume, r)}
	v.load()
	return v
}

// XML returns the definition with only what vsh changed differing from the
// user's file.
func (v *Volume) XML() []byte { return v.src.xml() }

// Pos returns the position of an element of the document.
func (v *Volume) Pos(e *etree.Element) schema.Pos { return v.src.pos(e) }

// Document returns the underlying document.
func (v *Volume) Document() *schema.Document { return v.src.doc }

// Clone returns an independent copy of v.
func (v *Volume) Clone() *Volume {
	c, err := cloneSource(&v.src)
	if err != nil {
		c = copySource(&v.src)
	}
	out := &Volume{src: c}
	out.load()
	return out
}

func (v *Volume) edited() {
	v.src.dirty = true
	v.load()
}

// SetKey sets <key>.
func (v *Volume) SetKey(key string) {
	e := ensureChild(v.src.root(), "key", before(volumeOrder, "key")...)
	setText(e, key)
	v.edited()
}

// SetPath sets <target><path>.
func (v *Volume) SetPath(path string) {
	t := ensureChild(v.src.root(), "target", before(volumeOrder, "target")...)
	setText(ensureChild(t, "path", before(targetOrder, "path")...), path)
	v.edited()
}

// SetFormat sets <target><format type=>.
func (v *Volume) SetFormat(format string) {
	t := ensureChild(v.src.root(), "target", before(volumeOrder, "target")...)
	setAttr(ensureChild(t, "format", before(targetOrder, "format")...), "type", format)
	v.edited()
}

// SetSizes sets <capacity> and <allocation> in bytes (vol-dumpxml, vol-resize).
func (v *Volume) SetSizes(capacity, allocation uint64) {
	r := v.src.root()
	setBytes(r, volumeOrder, "capacity", capacity)
	setBytes(r, volumeOrder, "allocation", allocation)
	v.edited()
}
