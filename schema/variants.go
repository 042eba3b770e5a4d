package schema

import (
	"fmt"
	"strings"

	"github.com/beevik/etree"
)

// A variant is a requirement that holds only for one value of a type
// attribute: libvirt's schema picks the content of <interface>, <disk> and
// friends by their type. The rule tables merge the variants' vocabulary;
// these checks restore what each variant requires.
type variant struct {
	path     string   // element path from the root, e.g. "devices/interface"; "." is the root
	attr     string   // discriminating attribute
	values   []string // values it applies to; nil: any; "" matches an absent attribute
	child    string   // child element the variant concerns; "": the element itself
	optional bool     // the child may be absent; the rest applies when present
	attrs    []string // attributes the child must carry
	forbid   []string // attributes the child must not carry
	kids     []string // elements the child must contain
	oneOf    []string // the child must carry at least one of these attributes
	noKids   []string // elements the child must not contain

	steps, childSteps []string // path and child split at '/', filled by indexVariants
}

var domainVariants = []variant{
	{path: "devices/interface", attr: "type", values: []string{"network"}, child: "source", attrs: []string{"network"}},
	{path: "devices/interface", attr: "type", values: []string{"direct", "vdpa"}, child: "source", attrs: []string{"dev"}},
	{path: "devices/interface", attr: "type", values: []string{"bridge"}, child: "source", optional: true, attrs: []string{"bridge"}},
	{path: "devices/interface", attr: "type", values: []string{"internal"}, child: "source", attrs: []string{"name"}},
	{path: "devices/interface", attr: "type", values: []string{"mcast", "client", "udp"}, child: "source", attrs: []string{"address", "port"}},
	{path: "devices/interface", attr: "type", values: []string{"server"}, child: "source", attrs: []string{"port"}},
	{path: "devices/interface", attr: "type", values: []string{"hostdev"}, child: "source"},
	{path: "devices/interface", attr: "type", values: []string{"vhostuser"}, child: "source", attrs: []string{"type", "path", "mode"}},
	{path: "devices/interface", attr: "type", values: []string{"vds"}, child: "source", attrs: []string{"switchid", "portid", "portgroupid", "connectionid"}},
	{path: "devices/disk", attr: "type", values: []string{"network"}, child: "source", attrs: []string{"protocol"}},
	{path: "devices/disk", attr: "type", values: []string{"volume"}, child: "source", optional: true, attrs: []string{"pool", "volume"}},
	{path: "devices/disk", attr: "type", values: []string{"dir"}, child: "source", optional: true, attrs: []string{"dir"}},
	{path: "devices/disk", attr: "type", values: []string{"nvme"}, child: "source", attrs: []string{"type", "namespace"}},
	{path: "devices/hostdev", attr: "type", values: []string{"pci"}, child: "source", kids: []string{"address"}},
	{path: "devices/filesystem", attr: "type", values: []string{"template"}, child: "source", attrs: []string{"name"}},
	{path: "devices/filesystem", attr: "type", values: []string{"ram"}, child: "source", attrs: []string{"usage"}},
	{path: "devices/filesystem", attr: "type", values: []string{"block", "file"}, child: "source", attrs: []string{"file"}},
	{path: "devices/interface", attr: "type", values: []string{"hostdev"}, child: "source", kids: []string{"address"}},
	{path: "devices/disk", attr: "type", values: []string{"file", ""}, child: "source", optional: true, forbid: []string{"dev", "dir", "protocol", "pool", "volume", "name", "path", "namespace"}},
	{path: "devices/disk", attr: "type", values: []string{"block"}, child: "source", optional: true, forbid: []string{"file", "dir", "protocol", "pool", "volume", "name", "path", "namespace"}},
	{path: "devices/disk", attr: "type", values: []string{"dir"}, child: "source", optional: true, forbid: []string{"file", "dev", "protocol", "pool", "volume", "name", "path", "namespace"}},
	{path: "devices/disk", attr: "type", values: []string{"network"}, child: "source", optional: true, forbid: []string{"file", "dev", "dir", "pool", "volume", "path", "namespace", "startupPolicy"}},
	{path: "devices/disk", attr: "type", values: []string{"volume"}, child: "source", optional: true, forbid: []string{"file", "dev", "dir", "protocol", "name", "path", "namespace"}},
	{path: "devices/disk", attr: "type", values: []string{"file", "", "block", "dir", "volume"}, child: "source", optional: true, noKids: []string{"host", "snapshot", "config", "auth", "initiator", "cookies", "readahead", "timeout", "ssl", "identity", "address", "reconnect"}},
	{path: "devices/interface", attr: "type", values: []string{"network"}, child: "source", optional: true, forbid: []string{"bridge", "dev", "mode", "address", "port", "path", "name"}},
	{path: "devices/interface", attr: "type", values: []string{"bridge"}, child: "source", optional: true, forbid: []string{"network", "portgroup", "dev", "mode", "address", "port", "path", "name"}},
	{path: "devices/interface", attr: "type", values: []string{"direct"}, child: "source", optional: true, forbid: []string{"network", "portgroup", "bridge", "address", "port", "path", "name"}},
	{path: "devices/controller", attr: "type", values: []string{"pci"}, attrs: []string{"model"}},
	{path: "devices/channel", child: "target", attrs: []string{"type"}},
	{path: "devices/hostdev", attr: "type", values: []string{"usb"}, child: "source"},
	{path: "devices/hostdev", attr: "type", values: []string{"scsi"}, child: "source", kids: []string{"adapter", "address"}},
	{path: "devices/hostdev", attr: "type", values: []string{"mdev"}, attrs: []string{"model"}},
	{path: "devices/hostdev", attr: "type", values: []string{"mdev"}, child: "source", kids: []string{"address"}},
	{path: "devices/interface", attr: "type", values: []string{"udp"}, child: "source", kids: []string{"local"}},
	{path: "devices/input", attr: "type", values: []string{"passthrough"}, attrs: []string{"bus"}},
	{path: "devices/input", attr: "type", values: []string{"passthrough"}, child: "source", attrs: []string{"evdev"}},
	{path: "devices/input", attr: "type", values: []string{"evdev"}, child: "source", attrs: []string{"dev"}},
	{path: "devices/smartcard", attr: "mode", values: []string{"passthrough"}, attrs: []string{"type"}},
	{path: "devices/rng", child: "backend", optional: true},
	{path: "devices/hostdev", attr: "type", values: []string{"mdev"}, child: "source/address", optional: true, attrs: []string{"uuid"}},
	{path: "devices/hostdev", attr: "type", values: []string{"scsi"}, child: "source/address", optional: true, attrs: []string{"bus", "target", "unit"}},
	{path: "devices/disk/source/auth/secret", oneOf: []string{"uuid", "usage"}},
	{path: "devices/disk/auth/secret", oneOf: []string{"uuid", "usage"}},
	{path: "devices/rng/backend", attr: "model", values: []string{"egd"}, attrs: []string{"type"}},
	{path: "devices/graphics/listen", attr: "type", values: []string{"network"}, attrs: []string{"network"}},
	{path: "devices/graphics", attr: "type", values: []string{"spice"}, child: "gl", optional: true, attrs: []string{"enable"}},
	{path: "devices/channel/target", attr: "type", values: []string{"guestfwd"}, attrs: []string{"address", "port"}},
	{path: "devices/disk/source/host", attr: "transport", values: []string{"", "tcp", "rdma"}, attrs: []string{"name"}},
	{path: "devices/disk/source/host", attr: "transport", values: []string{"unix"}, attrs: []string{"socket"}},
	{path: "cputune/vcpusched", attr: "scheduler", values: []string{"fifo", "rr"}, attrs: []string{"priority"}},
	{path: "cputune/iothreadsched", attr: "scheduler", values: []string{"fifo", "rr"}, attrs: []string{"priority"}},
	{path: "cputune/emulatorsched", attr: "scheduler", values: []string{"fifo", "rr"}, attrs: []string{"priority"}},
}

// poolVariants is what each pool type's schema requires: the source and
// target elements and what they contain.
var poolVariants = []variant{
	{path: ".", attr: "type", values: []string{"fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "rbd", "sheepdog", "gluster", "zfs", "vstorage"}, child: "source"},
	{path: ".", attr: "type", values: []string{"dir", "fs", "netfs", "logical", "disk", "iscsi", "scsi", "mpath", "vstorage"}, child: "target"},
	{path: ".", attr: "type", values: []string{"dir", "fs", "netfs", "disk", "iscsi", "scsi", "mpath", "zfs", "vstorage"}, child: "target", optional: true, kids: []string{"path"}},
	{path: ".", attr: "type", values: []string{"fs", "disk", "iscsi", "iscsi-direct"}, child: "source", optional: true, kids: []string{"device"}},
	{path: ".", attr: "type", values: []string{"fs"}, child: "source", optional: true, kids: []string{"format"}},
	{path: ".", attr: "type", values: []string{"netfs", "iscsi", "iscsi-direct", "rbd", "gluster"}, child: "source", optional: true, kids: []string{"host"}},
	{path: ".", attr: "type", values: []string{"netfs"}, child: "source", optional: true, kids: []string{"dir", "format"}},
	{path: ".", attr: "type", values: []string{"scsi"}, child: "source", optional: true, kids: []string{"adapter"}},
	{path: ".", attr: "type", values: []string{"iscsi-direct"}, child: "source", optional: true, kids: []string{"initiator"}},
	{path: ".", attr: "type", values: []string{"rbd", "sheepdog", "gluster", "zfs", "vstorage"}, child: "source", optional: true, kids: []string{"name"}},
	{path: ".", attr: "type", values: []string{"dir", "fs", "netfs", "disk", "iscsi", "iscsi-direct", "scsi", "mpath"}, child: "name", optional: false},
	{path: "source/auth/secret", oneOf: []string{"uuid", "usage"}},
}

// variantIndex groups a variant list by where it applies: the root (key
// ".", tag "") or the children named tag of the root's child named by the
// key ("devices"), so that one pass over the document finds them all.
type variantIndex map[string]map[string][]*variant

func indexVariants(vs []variant) variantIndex {
	idx := variantIndex{}
	for i := range vs {
		vs[i].steps = strings.Split(vs[i].path, "/")
		if vs[i].child != "" {
			vs[i].childSteps = strings.Split(vs[i].child, "/")
		}
		if strings.Count(vs[i].path, "/") > 1 {
			// Deeper paths are few; they are walked one by one.
			idx["/"] = map[string][]*variant{"": append(idx["/"][""], &vs[i])}
			continue
		}
		parent, tag, _ := strings.Cut(vs[i].path, "/")
		if idx[parent] == nil {
			idx[parent] = map[string][]*variant{}
		}
		idx[parent][tag] = append(idx[parent][tag], &vs[i])
	}
	return idx
}

var (
	domainVariantIndex = indexVariants(domainVariants)
	poolVariantIndex   = indexVariants(poolVariants)
)

// checkVariants applies the variants of idx to the document rooted at root.
func (v *validator) checkVariants(root *etree.Element, idx variantIndex) {
	for _, vr := range idx["."][""] {
		v.checkVariant(root, vr)
	}
	for _, vr := range idx["/"][""] {
		for _, e := range elementsAt(root, vr.steps) {
			v.checkVariant(e, vr)
		}
	}
	for parentName, byTag := range idx {
		if parentName == "." || parentName == "/" {
			continue
		}
		parent := root.SelectElement(parentName)
		if parent == nil {
			continue
		}
		for _, t := range parent.Child {
			e, ok := t.(*etree.Element)
			if !ok || e.Space != "" {
				continue
			}
			for _, vr := range byTag[e.Tag] {
				v.checkVariant(e, vr)
			}
		}
	}
}

// elementsAt returns the elements below e reached by the element names of
// path, in document order.
func elementsAt(e *etree.Element, path []string) []*etree.Element {
	var out []*etree.Element
	var walk func(e *etree.Element, path []string)
	walk = func(e *etree.Element, path []string) {
		if len(path) == 0 {
			out = append(out, e)
			return
		}
		for _, t := range e.Child {
			if c, ok := t.(*etree.Element); ok && c.Space == "" && c.Tag == path[0] {
				walk(c, path[1:])
			}
		}
	}
	walk(e, path)
	return out
}

// firstAt returns the first element below e reached by path, or nil.
func firstAt(e *etree.Element, path []string) *etree.Element {
	for _, name := range path {
		if e = e.SelectElement(name); e == nil {
			return nil
		}
	}
	return e
}

// checkVariant applies one variant to e.
func (v *validator) checkVariant(e *etree.Element, vr *variant) {
	val := e.SelectAttrValue(vr.attr, "")
	if vr.values != nil && !contains(vr.values, val) {
		return
	}
	// what names the checked element in messages; built only when needed.
	self := func() string {
		if vr.attr != "" && val != "" {
			return fmt.Sprintf("<%s %s='%s'>", elemName(e), vr.attr, val)
		}
		return fmt.Sprintf("<%s>", elemName(e))
	}
	what := self
	if vr.child != "" {
		what = func() string { return fmt.Sprintf("<%s> of %s", vr.childSteps[len(vr.childSteps)-1], self()) }
	}
	c := e
	if vr.child != "" {
		c = firstAt(e, vr.childSteps)
		if c == nil {
			if !vr.optional {
				v.errorf(e, "%s needs a <%s> element", self(), vr.child)
			}
			return
		}
	}
	var missing []string
	for _, a := range vr.attrs {
		if c.SelectAttr(a) == nil {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		v.errorf(c, "%s is missing attribute %s", what(), strings.Join(missing, ", "))
	}
	if len(vr.oneOf) > 0 {
		found := false
		for _, a := range vr.oneOf {
			found = found || c.SelectAttr(a) != nil
		}
		if !found {
			v.errorf(c, "%s needs attribute %s", what(), strings.Join(vr.oneOf, " or "))
		}
	}
	for _, a := range vr.forbid {
		if c.SelectAttr(a) != nil {
			v.attrErrorf(c, a, "attribute %s is not allowed in %s", a, what())
		}
	}
	for _, k := range vr.noKids {
		if bad := c.SelectElement(k); bad != nil {
			v.errorf(bad, "element <%s> is not allowed in %s", k, what())
		}
	}
	for _, k := range vr.kids {
		if c.SelectElement(k) == nil {
			v.errorf(c, "%s needs a <%s> element", what(), k)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
