package local

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/beevik/etree"
	"golang.org/x/sys/unix"

	"vsh/domxml"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/storage"
)

// Storage volumes: files (and directories, block devices) in an active
// pool's target directory, laid out by a VolumeFormat.

// volPath returns the path of a volume of an active pool, refusing names
// and symlinks that lead out of the pool.
func volPath(p *poolObj, name string) (string, error) {
	path, err := storage.VolumePath(poolSpec(p.live), name)
	if err != nil {
		return "", &driver.Error{Code: driver.ErrInvalidArg, Detail: err.Error(), Err: err}
	}
	return path, nil
}

// statVol describes the volume at path, which volPath returned.
func statVol(p *poolObj, name, path string) (driver.VolumeInfo, storage.VolumeStat, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return driver.VolumeInfo{}, storage.VolumeStat{}, driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching name '%s'", name)
	}
	if err != nil {
		return driver.VolumeInfo{}, storage.VolumeStat{}, sysErr("cannot stat volume '%s'", err, path)
	}
	var st storage.VolumeStat
	if fi.Mode().IsRegular() {
		format, vf := probe(path)
		if st, err = vf.Stat(path); err != nil {
			// A damaged image is still a volume: list it with its file's
			// sizes so that it can be inspected, downloaded or deleted;
			// operations that need its metadata report the damage.
			st, err = fileStat(path, fi), nil
		}
		st.Format = format
	} else if st, err = storage.StatVolume(path); err != nil {
		if fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeCharDevice) != 0 {
			return driver.VolumeInfo{}, st, driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching name '%s'", name)
		}
		return driver.VolumeInfo{}, st, storageErr(err)
	}
	st.Name, st.Path = name, path
	return driver.VolumeInfo{Name: name, Pool: p.name, Key: path, Path: path, Type: st.Type, Format: st.Format,
		CapacityBytes: st.CapacityBytes, AllocationBytes: st.AllocationBytes}, st, nil
}

// fileStat describes a regular file without reading its content.
func fileStat(path string, fi fs.FileInfo) storage.VolumeStat {
	st := storage.VolumeStat{Name: filepath.Base(path), Path: path, Type: storage.VolFile, Format: storage.FormatRaw,
		CapacityBytes: uint64(fi.Size()), Mode: fi.Mode().Perm(), Owner: -1, Group: -1}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.AllocationBytes = uint64(sys.Blocks) * 512
		st.Owner, st.Group = int(sys.Uid), int(sys.Gid)
	}
	return st
}

// volInfo describes the volume file at path.
func volInfo(p *poolObj, name, path string) (driver.VolumeInfo, error) {
	v, _, err := statVol(p, name, path)
	return v, err
}

func (c *Conn) activePool(name string) (*poolObj, error) {
	p, err := c.findPool(name)
	if err != nil {
		return nil, err
	}
	if p.live == nil {
		return nil, poolInactive(p)
	}
	return p, nil
}

// ListVolumes returns the files of an active pool's directory.
func (c *Conn) ListVolumes(poolName string) ([]driver.VolumeInfo, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	p, err := c.findPool(poolName)
	if err != nil {
		return nil, err
	}
	if p.live == nil {
		return nil, driver.Errorf(driver.ErrOperationInvalid, "storage pool '%s' is not active", p.name)
	}
	ents, err := os.ReadDir(p.live.Target.Path)
	if err != nil {
		return nil, sysErr("cannot open directory '%s'", err, p.live.Target.Path)
	}
	var out []driver.VolumeInfo
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".wipe") {
			continue // hypervisor/storage's vol-wipe of a qcow2 volume at work
		}
		path, err := volPath(p, e.Name())
		if err != nil {
			continue // symlinks out of the pool are not its volumes
		}
		if v, err := volInfo(p, e.Name(), path); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// findVol finds a volume by name in poolName, or by path or key (the
// same thing here) in any active pool when poolName is "".
func (c *Conn) findVol(poolName, ref string) (*poolObj, driver.VolumeInfo, error) {
	p, v, _, err := c.findVolStat(poolName, ref)
	return p, v, err
}

// findVolStat is findVol that also returns what hypervisor/storage knows
// of the volume.
func (c *Conn) findVolStat(poolName, ref string) (*poolObj, driver.VolumeInfo, storage.VolumeStat, error) {
	if poolName != "" {
		p, err := c.activePool(poolName)
		if err != nil {
			return nil, driver.VolumeInfo{}, storage.VolumeStat{}, err
		}
		path, err := volPath(p, ref)
		if err != nil {
			return nil, driver.VolumeInfo{}, storage.VolumeStat{}, err
		}
		v, st, err := statVol(p, ref, path)
		return p, v, st, err
	}
	notFound := driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching path '%s'", ref)
	if !filepath.IsAbs(ref) {
		return nil, driver.VolumeInfo{}, storage.VolumeStat{}, notFound
	}
	all, err := c.allPools()
	if err != nil {
		return nil, driver.VolumeInfo{}, storage.VolumeStat{}, err
	}
	clean := filepath.Clean(ref)
	for _, p := range all {
		if p.live == nil || filepath.Dir(clean) != filepath.Clean(p.live.Target.Path) {
			continue
		}
		path, err := volPath(p, filepath.Base(clean))
		if err != nil {
			return nil, driver.VolumeInfo{}, storage.VolumeStat{}, err
		}
		if v, st, err := statVol(p, filepath.Base(clean), path); err == nil {
			return p, v, st, nil
		}
	}
	return nil, driver.VolumeInfo{}, storage.VolumeStat{}, notFound
}

// LookupVolume finds a volume by name in a pool, or by path or key.
func (c *Conn) LookupVolume(poolName, ref string) (driver.VolumeInfo, error) {
	l, err := c.read()
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	defer l.unlock()
	_, v, err := c.findVol(poolName, ref)
	return v, err
}

// volExists is libvirt's VIR_ERR_STORAGE_VOL_EXIST text.
func volExists(name string) error {
	return driver.Errorf(driver.ErrSystem, "storage volume '%s' exists already", name)
}

// newVolume creates volume spec.Name of format in an active pool; on
// failure nothing is left behind.
func newVolume(p *poolObj, format string, spec storage.VolumeSpec) (driver.VolumeInfo, error) {
	vf, err := formatFor(format)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	path, err := volPath(p, spec.Name)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if _, err := os.Lstat(path); err == nil {
		return driver.VolumeInfo{}, volExists(spec.Name)
	}
	spec.AllocationBytes = min(spec.AllocationBytes, spec.CapacityBytes)
	if _, _, avail, err := poolSizes(p.live.Target.Path); err == nil && spec.AllocationBytes > avail {
		return driver.VolumeInfo{}, driver.Errorf(driver.ErrOperationFailed, "Not enough space left in storage pool")
	}
	if spec.BackingPath != "" && (format == "" || format == storage.FormatRaw) {
		return driver.VolumeInfo{}, driver.Errorf(driver.ErrConfigUnsupported, "backing storage not supported for raw volumes")
	}
	if err := vf.Create(poolSpec(p.live), spec); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return driver.VolumeInfo{}, volExists(spec.Name)
		}
		return driver.VolumeInfo{}, storageErr(err)
	}
	return volInfo(p, spec.Name, path)
}

func volMode(perm *domxml.Permissions) os.FileMode {
	if perm != nil {
		return parseMode(perm.Mode, 0o600)
	}
	return 0o600
}

// backingFor resolves a backing volume given by name (in pool p), key or
// path to the path and format of a volume in an active pool.
func (c *Conn) backingFor(p *poolObj, ref, format string) (string, string, error) {
	_, bv, err := c.findVol(p.name, ref)
	if err != nil {
		if _, bv2, err2 := c.findVol("", ref); err2 == nil {
			bv, err = bv2, nil
		}
	}
	if err != nil {
		return "", "", err
	}
	if format == "" {
		format = bv.Format
	}
	if format != storage.FormatRaw && format != storage.FormatQcow2 {
		return "", "", driver.Errorf(driver.ErrConfigUnsupported, "backing volume format '%s' is not supported by vsh yet", format)
	}
	return bv.Path, format, nil
}

// CreateVolume creates a volume file from XML.
func (c *Conn) CreateVolume(poolName string, xml []byte, file string, validate bool) (driver.VolumeInfo, error) {
	if err := c.writable("virStorageVolCreateXML"); err != nil {
		return driver.VolumeInfo{}, err
	}
	def, err := parseVolume(file, xml, validate)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	var info driver.VolumeInfo
	err = c.withPool("virStorageVolCreateXML", poolName, func(p *poolObj) error {
		if p.live == nil {
			return poolInactive(p)
		}
		spec := storage.VolumeSpec{Name: def.Name, CapacityBytes: def.CapacityBytes, AllocationBytes: def.AllocationBytes,
			Mode: volMode(def.Target.Permissions), Owner: -1, Group: -1}
		if perm := def.Target.Permissions; perm != nil {
			spec.Owner, spec.Group = perm.Owner, perm.Group
		}
		if def.BackingStore != nil && def.BackingStore.Path != "" {
			spec.BackingPath, spec.BackingFormat, err = c.backingFor(p, def.BackingStore.Path, def.BackingStore.Format)
			if err != nil {
				return err
			}
		}
		info, err = newVolume(p, def.Target.Format, spec)
		return err
	})
	return info, err
}

// CreateVolumeAs creates a volume file from vol-create-as options.
func (c *Conn) CreateVolumeAs(poolName string, opts driver.VolumeCreateAs) (driver.VolumeInfo, error) {
	var info driver.VolumeInfo
	err := c.withPool("virStorageVolCreateXML", poolName, func(p *poolObj) error {
		if p.live == nil {
			return poolInactive(p)
		}
		spec := storage.VolumeSpec{Name: opts.Name, CapacityBytes: opts.CapacityBytes, AllocationBytes: opts.AllocationBytes,
			Mode: 0o600, Owner: -1, Group: -1, PreallocMetadata: opts.PreallocMetadata}
		var err error
		if opts.BackingVol != "" {
			spec.BackingPath, spec.BackingFormat, err = c.backingFor(p, opts.BackingVol, opts.BackingVolFormat)
			if err != nil {
				return err
			}
		}
		info, err = newVolume(p, opts.Format, spec)
		return err
	})
	return info, err
}

// CloneVolume clones a volume under a new name in its pool: a qcow2
// volume becomes the backing file of a copy-on-write overlay, other
// volumes are copied keeping their holes.
func (c *Conn) CloneVolume(src driver.VolumeInfo, newName string) (driver.VolumeInfo, error) {
	var info driver.VolumeInfo
	err := c.withPool("virStorageVolCreateXMLFrom", src.Pool, func(p *poolObj) error {
		_, sv, st, err := c.findVolStat(src.Pool, src.Name)
		if err != nil {
			return err
		}
		dst, err := volPath(p, newName)
		if err != nil {
			return err
		}
		if _, err := os.Lstat(dst); err == nil {
			return volExists(newName)
		}
		if cl, ok := VolumeFormats[sv.Format].(VolumeCloner); ok {
			// An overlay must not be built on an image whose metadata
			// cannot be read (statVol lists those with their file sizes).
			if _, serr := VolumeFormats[sv.Format].Stat(st.Path); serr != nil {
				return storageErr(serr)
			}
			err = cl.Clone(poolSpec(p.live), st, newName)
		} else {
			// A plain copy of the file keeps any format's layout.
			st.Format = storage.FormatRaw
			_, err = storage.CloneVolume(poolSpec(p.live), st, newName, false)
		}
		if errors.Is(err, fs.ErrExist) {
			return volExists(newName)
		}
		if err != nil {
			return storageErr(err)
		}
		info, err = volInfo(p, newName, dst)
		return err
	})
	return info, err
}

func (c *Conn) withVol(api string, vol driver.VolumeInfo, fn func(*poolObj, driver.VolumeInfo, storage.VolumeStat) error) error {
	l, err := c.write(api)
	if err != nil {
		return err
	}
	defer l.unlock()
	ref := vol.Name
	if vol.Pool == "" {
		ref = vol.Path
	}
	p, v, st, err := c.findVolStat(vol.Pool, ref)
	if err != nil {
		return err
	}
	return fn(p, v, st)
}

// DeleteVolume removes a volume; one a running domain uses is refused.
func (c *Conn) DeleteVolume(vol driver.VolumeInfo) error {
	return c.withVol("virStorageVolDelete", vol, func(p *poolObj, v driver.VolumeInfo, st storage.VolumeStat) error {
		return storageErr(storage.DeleteVolume(st))
	})
}

// WipeVolume zeroes a volume's content, keeping its size and format.
func (c *Conn) WipeVolume(vol driver.VolumeInfo) error {
	return c.withVol("virStorageVolWipe", vol, func(p *poolObj, v driver.VolumeInfo, st storage.VolumeStat) error {
		w, ok := VolumeFormats[v.Format].(VolumeWiper)
		if !ok {
			return driver.Errorf(driver.ErrConfigUnsupported, "wiping '%s' volumes is not supported by vsh yet", v.Format)
		}
		return storageErr(w.Wipe(st))
	})
}

// ResizeVolume changes a volume's capacity with libvirt's rules.
func (c *Conn) ResizeVolume(vol driver.VolumeInfo, capacityBytes uint64, flags driver.VolumeResizeFlags) error {
	return c.withVol("virStorageVolResize", vol, func(p *poolObj, v driver.VolumeInfo, st storage.VolumeStat) error {
		target := capacityBytes
		if flags.Delta {
			if flags.Shrink {
				if capacityBytes > v.CapacityBytes {
					return driver.Errorf(driver.ErrInvalidArg, "can't shrink capacity below 0")
				}
				target = v.CapacityBytes - capacityBytes
			} else {
				target = v.CapacityBytes + capacityBytes
			}
		}
		if target < v.CapacityBytes && !flags.Shrink {
			return driver.Errorf(driver.ErrInvalidArg, "Can't shrink capacity below current capacity unless shrink flag explicitly specified")
		}
		if target < v.AllocationBytes && v.Format != storage.FormatRaw {
			return driver.Errorf(driver.ErrInvalidArg, "Can't shrink capacity below current allocation")
		}
		if flags.Allocate && v.Format != storage.FormatRaw {
			return driver.Errorf(driver.ErrOperationUnsupported, "preallocate is only supported for raw type volume")
		}
		if flags.Allocate && target > v.AllocationBytes {
			if _, _, avail, err := poolSizes(p.live.Target.Path); err == nil && target-v.AllocationBytes > avail {
				return driver.Errorf(driver.ErrOperationFailed, "Not enough space left in storage pool")
			}
		}
		vf, err := formatFor(v.Format)
		if err != nil {
			return err
		}
		return storageErr(vf.Resize(st, target, flags.Shrink, flags.Allocate))
	})
}

// VolumeXML describes a volume as vol-dumpxml shows it, with its backing
// store when it has one.
func (c *Conn) VolumeXML(vol driver.VolumeInfo) ([]byte, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	ref := vol.Name
	if vol.Pool == "" {
		ref = vol.Path
	}
	_, v, st, err := c.findVolStat(vol.Pool, ref)
	if err != nil {
		return nil, err
	}
	xml := domxml.NewVolume(v.Name, v.CapacityBytes, v.AllocationBytes, v.Format, v.Path).XML()
	if st.BackingPath == "" {
		return xml, nil
	}
	return withBackingStore(xml, st.BackingPath, st.BackingFormat)
}

// withBackingStore adds <backingStore> to a volume document.
func withBackingStore(xml []byte, path, format string) ([]byte, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(xml); err != nil {
		return nil, driver.Errorf(driver.ErrInternal, "cannot add the backing store to the volume XML: %v", err)
	}
	b := doc.Root().CreateElement("backingStore")
	b.CreateElement("path").SetText(path)
	if format != "" {
		b.CreateElement("format").CreateAttr("type", format)
	}
	doc.IndentWithSettings(&etree.IndentSettings{Spaces: 2})
	doc.WriteSettings.AttrSingleQuote = true
	return doc.WriteToBytes()
}

// UploadVolume writes r into a volume at opts.Offset. With opts.Sparse and
// a regular file as r, the file's holes become holes in the volume.
func (c *Conn) UploadVolume(vol driver.VolumeInfo, r io.Reader, opts driver.VolumeTransfer) error {
	st, err := c.transferVol("virStorageVolUpload", vol)
	if err != nil {
		return err
	}
	if f, ok := r.(*os.File); ok && opts.Sparse {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return uploadSparse(st, f, opts)
		}
	}
	return storageErr(storage.Upload(st, r, opts.Offset, opts.Length, opts.Progress))
}

// transferVol resolves the volume of an upload or download. The state
// lock is not held while data moves, so other commands are not blocked
// for the length of a transfer; hypervisor/storage locks the volume file.
func (c *Conn) transferVol(api string, vol driver.VolumeInfo) (storage.VolumeStat, error) {
	if err := c.writable(api); err != nil {
		return storage.VolumeStat{}, err
	}
	l, err := c.read()
	if err != nil {
		return storage.VolumeStat{}, err
	}
	defer l.unlock()
	ref := vol.Name
	if vol.Pool == "" {
		ref = vol.Path
	}
	_, _, st, err := c.findVolStat(vol.Pool, ref)
	if err == nil && st.Type == storage.VolDir {
		err = driver.Errorf(driver.ErrOperationUnsupported, "volume '%s' is a directory", st.Name)
	}
	return st, err
}

// uploadSparse uploads the data extents of src and punches holes in the
// volume where src has holes.
func uploadSparse(st storage.VolumeStat, src *os.File, opts driver.VolumeTransfer) error {
	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return sysErr("cannot seek '%s'", err, src.Name())
	}
	fi, err := src.Stat()
	if err != nil {
		return sysErr("cannot stat '%s'", err, src.Name())
	}
	total := uint64(max(fi.Size()-start, 0))
	if opts.Length > 0 {
		if opts.Length > total {
			return driver.Errorf(driver.ErrOperationFailed, "'%s' holds %d bytes, less than the %d to upload", src.Name(), total, opts.Length)
		}
		total = opts.Length
	}
	dst, err := os.OpenFile(st.Path, os.O_RDWR, 0)
	if err != nil {
		return sysErr("cannot open volume '%s'", err, st.Path)
	}
	defer dst.Close()
	var done uint64
	progress := func(n uint64) {
		done += n
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}
	fd := int(src.Fd())
	for pos := uint64(0); pos < total; {
		data, err := unix.Seek(fd, start+int64(pos), unix.SEEK_DATA)
		dataOff := uint64(data - start)
		if errors.Is(err, unix.ENXIO) || err == nil && dataOff >= total {
			dataOff = total // only a hole remains
		} else if err != nil {
			dataOff = pos // no SEEK_DATA: all data
		}
		if dataOff > pos {
			if err := punchHole(dst, opts.Offset+pos, dataOff-pos); err != nil {
				return err
			}
			progress(dataOff - pos)
		}
		if dataOff >= total {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		holeOff := uint64(hole - start)
		if err != nil || holeOff > total {
			holeOff = total
		}
		n := holeOff - dataOff
		r := io.NewSectionReader(src, start+int64(dataOff), int64(n))
		base := done
		err = storage.Upload(st, r, opts.Offset+dataOff, n, func(d, _ uint64) {
			if opts.Progress != nil {
				opts.Progress(base+d, total)
			}
		})
		if err != nil {
			return storageErr(err)
		}
		done += n
		pos = holeOff
	}
	if _, err := src.Seek(start+int64(total), io.SeekStart); err != nil {
		return sysErr("cannot seek '%s'", err, src.Name())
	}
	return nil
}

// punchHole deallocates [off, off+n) of f so it reads as zeros, writing
// zeros where the file system cannot punch holes, and extends f when the
// range ends past it.
func punchHole(f *os.File, off, n uint64) error {
	fi, err := f.Stat()
	if err != nil {
		return sysErr("cannot stat '%s'", err, f.Name())
	}
	if end := int64(off + n); end > fi.Size() {
		if err := f.Truncate(end); err != nil {
			return sysErr("cannot resize '%s'", err, f.Name())
		}
	}
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n))
	if err == nil {
		return nil
	}
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, uint64(len(zero)))
		if _, err := f.WriteAt(zero[:k], int64(off)); err != nil {
			return sysErr("cannot write '%s'", err, f.Name())
		}
		off += k
		n -= k
	}
	return nil
}

// DownloadVolume copies a volume's bytes from opts.Offset to w. Holes
// stay holes in a regular file w only with opts.Sparse.
func (c *Conn) DownloadVolume(vol driver.VolumeInfo, w io.Writer, opts driver.VolumeTransfer) error {
	st, err := c.transferVol("virStorageVolDownload", vol)
	if err != nil {
		return err
	}
	if !opts.Sparse {
		w = struct{ io.Writer }{w} // hide *os.File: holes are written as zeros
	}
	return storageErr(storage.Download(st, w, opts.Offset, opts.Length, opts.Progress))
}
