package shell

import (
	"fmt"
	"sort"
	"strings"

	"vsh/hypervisor/driver"
)

func init() {
	for name, h := range map[string]handler{
		"pool-define": cmdPoolDefine, "pool-define-as": cmdPoolDefineAs, "pool-create": cmdPoolCreate,
		"pool-build": cmdPoolBuild, "pool-start": cmdPoolStart, "pool-destroy": cmdPoolDestroy,
		"pool-delete": cmdPoolDelete, "pool-undefine": cmdPoolUndefine, "pool-list": cmdPoolList,
		"pool-info": cmdPoolInfo, "pool-dumpxml": cmdPoolDumpxml, "pool-autostart": cmdPoolAutostart,
		"pool-refresh": cmdPoolRefresh, "pool-edit": cmdPoolEdit,
		"vol-create": cmdVolCreate, "vol-create-as": cmdVolCreateAs, "vol-list": cmdVolList,
		"vol-info": cmdVolInfo, "vol-dumpxml": cmdVolDumpxml, "vol-path": cmdVolPath,
		"vol-delete": cmdVolDelete, "vol-resize": cmdVolResize, "vol-clone": cmdVolClone,
		"vol-wipe": cmdVolWipe,
	} {
		handlers[name] = h
	}
}

// lookupPool resolves a pool option by name or UUID.
func (s *Shell) lookupPool(ref string) (driver.PoolInfo, error) {
	p, err := s.conn.LookupPool(ref)
	if err != nil {
		return p, fail(err, "failed to get pool '%s'", ref)
	}
	return p, nil
}

// lookupVol resolves <vol> by name in --pool, or by key or path, with
// virsh's texts (virshCommandOptVolBy).
func (s *Shell) lookupVol(c *Call) (driver.VolumeInfo, error) {
	ref := c.Str("vol")
	pool := ""
	if c.Has("pool") {
		p, err := s.lookupPool(c.Str("pool"))
		if err != nil {
			return driver.VolumeInfo{}, err
		}
		pool = p.Name
	}
	v, err := s.conn.LookupVolume(pool, ref)
	if err != nil {
		if pool == "" {
			return v, fail(err, "failed to get vol '%s', specifying --pool might help", ref)
		}
		return v, fail(err, "failed to get vol '%s'", ref)
	}
	return v, nil
}

func cmdPoolDefine(s *Shell, c *Call) error {
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	p, err := s.conn.DefinePool(data, file, true)
	if err != nil {
		return fail(err, "Failed to define pool from %s", file)
	}
	s.extraf("Pool %s defined from %s\n", p.Name, file)
	return nil
}

func cmdPoolCreate(s *Shell, c *Call) error {
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	p, err := s.conn.CreatePool(data, file, true)
	if err != nil {
		return fail(err, "Failed to create pool from %s", file)
	}
	s.extraf("Pool %s created from %s\n", p.Name, file)
	return nil
}

// poolXML builds the pool document of pool-define-as the way virsh's
// buildPoolXML does.
func poolXML(c *Call) string {
	var b strings.Builder
	esc := xmlEscape
	fmt.Fprintf(&b, "<pool type='%s'>\n  <name>%s</name>\n", esc(c.Str("type")), esc(c.Str("name")))
	host, path, dev, name, format := c.Str("source-host"), c.Str("source-path"), c.Str("source-dev"), c.Str("source-name"), c.Str("source-format")
	if host != "" || path != "" || dev != "" || name != "" || format != "" {
		b.WriteString("  <source>\n")
		if host != "" {
			fmt.Fprintf(&b, "    <host name='%s'/>\n", esc(host))
		}
		if path != "" {
			fmt.Fprintf(&b, "    <dir path='%s'/>\n", esc(path))
		}
		if dev != "" {
			fmt.Fprintf(&b, "    <device path='%s'/>\n", esc(dev))
		}
		if format != "" {
			fmt.Fprintf(&b, "    <format type='%s'/>\n", esc(format))
		}
		if name != "" {
			fmt.Fprintf(&b, "    <name>%s</name>\n", esc(name))
		}
		b.WriteString("  </source>\n")
	}
	if t := c.Str("target"); t != "" {
		fmt.Fprintf(&b, "  <target>\n    <path>%s</path>\n  </target>\n", esc(t))
	}
	b.WriteString("</pool>\n")
	return b.String()
}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", "\"", "&quot;")
	return r.Replace(s)
}

func cmdPoolDefineAs(s *Shell, c *Call) error {
	xml := poolXML(c)
	if c.Has("print-xml") {
		s.printf("%s", xml)
		return nil
	}
	p, err := s.conn.DefinePool([]byte(xml), "", true)
	if err != nil {
		return fail(err, "Failed to define pool %s", c.Str("name"))
	}
	s.extraf("Pool %s defined\n", p.Name)
	return nil
}

func simplePoolOp(s *Shell, c *Call, op func(string) error, failText, okText string) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	if err := op(p.Name); err != nil {
		return fail(err, failText, p.Name)
	}
	s.extraf(okText+"\n", p.Name)
	return nil
}

func buildFlags(c *Call) driver.PoolBuildFlags {
	return driver.PoolBuildFlags{NoOverwrite: c.Has("no-overwrite"), Overwrite: c.Has("overwrite")}
}

func cmdPoolBuild(s *Shell, c *Call) error {
	return simplePoolOp(s, c, func(n string) error { return s.conn.BuildPool(n, buildFlags(c)) },
		"Failed to build pool %s", "Pool %s built")
}

func cmdPoolStart(s *Shell, c *Call) error {
	return simplePoolOp(s, c, func(n string) error {
		if c.Has("build") || c.Has("overwrite") || c.Has("no-overwrite") {
			if err := s.conn.BuildPool(n, buildFlags(c)); err != nil {
				return err
			}
		}
		return s.conn.StartPool(n)
	}, "Failed to start pool %s", "Pool %s started")
}

func cmdPoolDestroy(s *Shell, c *Call) error {
	return simplePoolOp(s, c, s.conn.DestroyPool, "Failed to destroy pool %s", "Pool %s destroyed")
}

func cmdPoolDelete(s *Shell, c *Call) error {
	return simplePoolOp(s, c, s.conn.DeletePool, "Failed to delete pool %s", "Pool %s deleted")
}

func cmdPoolUndefine(s *Shell, c *Call) error {
	return simplePoolOp(s, c, s.conn.UndefinePool, "Failed to undefine pool %s", "Pool %s has been undefined")
}

func cmdPoolRefresh(s *Shell, c *Call) error {
	return simplePoolOp(s, c, s.conn.RefreshPool, "Failed to refresh pool %s", "Pool %s refreshed")
}

func cmdPoolAutostart(s *Shell, c *Call) error {
	if c.Has("disable") {
		return simplePoolOp(s, c, func(n string) error { return s.conn.SetPoolAutostart(n, false) },
			"failed to unmark pool %s as autostarted", "Pool %s unmarked as autostarted")
	}
	return simplePoolOp(s, c, func(n string) error { return s.conn.SetPoolAutostart(n, true) },
		"failed to mark pool %s as autostarted", "Pool %s marked as autostarted")
}

// poolTypes are the pool types virsh knows (pool-list --type).
var poolTypes = []string{"dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd", "sheepdog", "gluster", "zfs", "vstorage"}

// jsonPool is the JSON form of a pool (see JSON.md).
type jsonPool struct {
	driver.PoolInfo
	State string `json:"state"`
}

func cmdPoolList(s *Shell, c *Call) error {
	var types map[string]bool
	if t := c.Str("type"); t != "" {
		types = map[string]bool{}
		for _, x := range strings.Split(t, ",") {
			known := false
			for _, k := range poolTypes {
				known = known || k == x
			}
			if !known {
				return fail(nil, "Invalid pool type '%s'", x)
			}
			types[x] = true
		}
	}
	pools, err := s.conn.ListPools()
	if err != nil {
		return fail(err, "Failed to list pools")
	}
	active, inactive := true, false
	if c.Has("inactive") {
		active, inactive = false, true
	}
	if c.Has("all") {
		active, inactive = true, true
	}
	var out []driver.PoolInfo
	for _, p := range pools {
		if p.Active() && !active || !p.Active() && !inactive {
			continue
		}
		if c.Has("persistent") && !c.Has("transient") && !p.Persistent ||
			c.Has("transient") && !c.Has("persistent") && p.Persistent {
			continue
		}
		if c.Has("autostart") && !c.Has("no-autostart") && !p.Autostart ||
			c.Has("no-autostart") && !c.Has("autostart") && p.Autostart {
			continue
		}
		if types != nil && !types[p.Type] {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if c.Has("json") {
		l := make([]jsonPool, 0, len(out))
		for _, p := range out {
			l = append(l, jsonPool{p, p.State.String()})
		}
		return s.printJSON(l)
	}
	if c.Has("name") || c.Has("uuid") {
		for _, p := range out {
			var f []string
			if c.Has("uuid") {
				f = append(f, p.UUID)
			}
			if c.Has("name") {
				f = append(f, p.Name)
			}
			s.printf("%s\n", strings.Join(f, " "))
		}
		return nil
	}
	rows := make([][]string, 0, len(out))
	if c.Has("details") {
		for _, p := range out {
			r := []string{p.Name, p.State.String(), yesNo(p.Autostart), yesNo(p.Persistent)}
			if p.Active() {
				r = append(r, prettyCapacity(p.CapacityBytes), prettyCapacity(p.AllocationBytes), prettyCapacity(p.AvailableBytes))
			} else {
				r = append(r, "-", "-", "-")
			}
			rows = append(rows, r)
		}
		s.printf("%s", table([]string{"Name", "State", "Autostart", "Persistent", "Capacity", "Allocation", "Available"}, rows, s.Quiet))
		return nil
	}
	for _, p := range out {
		rows = append(rows, []string{p.Name, activeText(p.Active()), yesNo(p.Autostart)})
	}
	s.printf("%s", table([]string{"Name", "State", "Autostart"}, rows, s.Quiet))
	return nil
}

func cmdPoolInfo(s *Shell, c *Call) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	if c.Has("json") {
		return s.printJSON(jsonPool{p, p.State.String()})
	}
	size := prettyCapacity
	if c.Has("bytes") {
		size = func(v uint64) string { return fmt.Sprintf("%d", v) }
	}
	kvs := []string{"Name", p.Name, "UUID", p.UUID, "State", p.State.String(),
		"Persistent", yesNo(p.Persistent), "Autostart", yesNo(p.Autostart)}
	if p.Active() {
		kvs = append(kvs, "Capacity", size(p.CapacityBytes), "Allocation", size(p.AllocationBytes), "Available", size(p.AvailableBytes))
	}
	s.printf("%s", kv(15, kvs...))
	return nil
}

func cmdPoolDumpxml(s *Shell, c *Call) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	xml, err := s.conn.PoolXML(p.Name, c.Has("inactive"))
	if err != nil {
		return fail(err, "")
	}
	s.printf("%s\n", trimNL(string(xml)))
	return nil
}

func cmdVolCreate(s *Shell, c *Call) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	v, err := s.conn.CreateVolume(p.Name, data, file, true)
	if err != nil {
		return fail(err, "Failed to create vol from %s", file)
	}
	s.extraf("Vol %s created from %s\n", v.Name, file)
	return nil
}

// volumeXML is vol-create-as --print-xml's document.
func volumeXML(o driver.VolumeCreateAs, hasAlloc bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<volume>\n  <name>%s</name>\n  <capacity>%d</capacity>\n", xmlEscape(o.Name), o.CapacityBytes)
	if hasAlloc {
		fmt.Fprintf(&b, "  <allocation>%d</allocation>\n", o.AllocationBytes)
	}
	if o.Format != "" {
		fmt.Fprintf(&b, "  <target>\n    <format type='%s'/>\n  </target>\n", xmlEscape(o.Format))
	}
	if o.BackingVol != "" {
		fmt.Fprintf(&b, "  <backingStore>\n    <path>%s</path>\n", xmlEscape(o.BackingVol))
		if o.BackingVolFormat != "" {
			fmt.Fprintf(&b, "    <format type='%s'/>\n", xmlEscape(o.BackingVolFormat))
		}
		b.WriteString("  </backingStore>\n")
	}
	b.WriteString("</volume>\n")
	return b.String()
}

func cmdVolCreateAs(s *Shell, c *Call) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	capacity, err := sizeArg(c, "capacity")
	if err != nil {
		return err
	}
	o := driver.VolumeCreateAs{Name: c.Str("name"), CapacityBytes: capacity, Format: c.Str("format"),
		BackingVol: c.Str("backing-vol"), BackingVolFormat: c.Str("backing-vol-format"),
		PreallocMetadata: c.Has("prealloc-metadata")}
	if c.Has("allocation") {
		if o.AllocationBytes, err = sizeArg(c, "allocation"); err != nil {
			return err
		}
		o.AllocationSet = true
	}
	if c.Has("print-xml") {
		s.printf("%s", volumeXML(o, c.Has("allocation")))
		return nil
	}
	v, err := s.conn.CreateVolumeAs(p.Name, o)
	if err != nil {
		return fail(err, "Failed to create vol %s", o.Name)
	}
	s.extraf("Vol %s created\n", v.Name)
	return nil
}

// sizeArg parses a storage size (default unit bytes) with virsh's
// "Malformed size" error.
func sizeArg(c *Call, name string) (uint64, error) {
	n, err := scaledArg(c, name, "b")
	if err != nil {
		var cause error
		if ce, ok := err.(*cmdError); ok {
			cause = ce.err
		}
		return 0, fail(cause, "Malformed size %s", c.Str(name))
	}
	return n, nil
}

// jsonVolume is the JSON form of a volume (see JSON.md).
type jsonVolume = driver.VolumeInfo

func cmdVolList(s *Shell, c *Call) error {
	p, err := s.lookupPool(c.Str("pool"))
	if err != nil {
		return err
	}
	vols, err := s.conn.ListVolumes(p.Name)
	if err != nil {
		return fail(err, "Failed to list storage volumes")
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
	if c.Has("json") {
		if vols == nil {
			vols = []jsonVolume{}
		}
		return s.printJSON(vols)
	}
	rows := make([][]string, 0, len(vols))
	if c.Has("details") {
		for _, v := range vols {
			rows = append(rows, []string{v.Name, v.Path, v.Type, prettyCapacity(v.CapacityBytes), prettyCapacity(v.AllocationBytes)})
		}
		s.printf("%s", table([]string{"Name", "Path", "Type", "Capacity", "Allocation"}, rows, s.Quiet))
		return nil
	}
	for _, v := range vols {
		rows = append(rows, []string{v.Name, v.Path})
	}
	s.printf("%s", table([]string{"Name", "Path"}, rows, s.Quiet))
	return nil
}

func cmdVolInfo(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	if c.Has("json") {
		return s.printJSON(v)
	}
	size := prettyCapacity
	if c.Has("bytes") {
		size = func(n uint64) string { return fmt.Sprintf("%d bytes", n) }
	}
	s.printf("%s", kv(15, "Name", v.Name, "Type", v.Type, "Capacity", size(v.CapacityBytes), "Allocation", size(v.AllocationBytes)))
	return nil
}

func cmdVolDumpxml(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.VolumeXML(v)
	if err != nil {
		return fail(err, "")
	}
	s.printf("%s\n", trimNL(string(xml)))
	return nil
}

func cmdVolPath(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	return s.printValue(c, "path", v.Path)
}

func cmdVolDelete(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	if err := s.conn.DeleteVolume(v); err != nil {
		return fail(err, "Failed to delete vol %s", c.Str("vol"))
	}
	s.extraf("Vol %s deleted\n", c.Str("vol"))
	return nil
}

func cmdVolWipe(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	if a := c.Str("algorithm"); a != "" && a != "zero" {
		return fail(nil, "Unsupported algorithm '%s'", a)
	}
	if err := s.conn.WipeVolume(v); err != nil {
		return fail(err, "Failed to wipe vol %s", c.Str("vol"))
	}
	s.extraf("Vol %s wiped\n", c.Str("vol"))
	return nil
}

func cmdVolResize(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	arg := c.Str("capacity")
	flags := driver.VolumeResizeFlags{Allocate: c.Has("allocate"), Delta: c.Has("delta"), Shrink: c.Has("shrink")}
	if strings.HasPrefix(arg, "-") {
		if !flags.Shrink {
			return fail(nil, "negative size requires --shrink")
		}
		c.Values["capacity"] = []string{arg[1:]}
		flags.Delta = true
	}
	capacity, err := scaledArg(c, "capacity", "b")
	c.Values["capacity"] = []string{arg}
	if err != nil {
		return fail(nil, "Malformed size %s", arg)
	}
	if err := s.conn.ResizeVolume(v, capacity, flags); err != nil {
		return fail(err, "Failed to change size of volume '%s' to %s", v.Name, arg)
	}
	s.extraf("Size of volume '%s' successfully changed to %s\n", v.Name, arg)
	return nil
}

func cmdVolClone(s *Shell, c *Call) error {
	v, err := s.lookupVol(c)
	if err != nil {
		return err
	}
	nv, err := s.conn.CloneVolume(v, c.Str("newname"))
	if err != nil {
		return fail(err, "Failed to clone vol from %s", v.Name)
	}
	s.extraf("Vol %s cloned from %s\n", nv.Name, v.Name)
	return nil
}
