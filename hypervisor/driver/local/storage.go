package local

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// Storage pools and volumes. The driver keeps pool definitions and their
// active state; what a pool type does on the host (create its directory,
// mount its source) is a PoolBackend, and how a volume file is laid out
// (raw, qcow2) is a VolumeFormat. Volumes of every pool type are files in
// the pool's target directory once the pool is started. hypervisor/storage
// adds backends and formats by adding to PoolBackends and VolumeFormats
// from an init function.

// PoolBackend is the host side of one pool type.
type PoolBackend interface {
	// Build prepares the pool's storage (pool-build): for a dir pool,
	// create the target directory.
	Build(p *domxml.Pool, flags driver.PoolBuildFlags) error
	// Start makes the target directory usable (pool-start): check it, or
	// mount the source on it.
	Start(p *domxml.Pool) error
	// Stop undoes Start (pool-destroy).
	Stop(p *domxml.Pool) error
	// Delete removes what Build created (pool-delete).
	Delete(p *domxml.Pool) error
}

// VolumeFormat is one on-disk volume format.
type VolumeFormat interface {
	// Probe reports whether f holds an image of this format.
	Probe(f *os.File) bool
	// Create lays out a new volume in f, an empty file just created.
	// allocation is how much to allocate up front (0: sparse). backing,
	// when not nil, is the image a copy-on-write volume reads through.
	Create(f *os.File, capacity, allocation uint64, backing *Backing) error
	// Capacity returns the size the guest sees.
	Capacity(f *os.File) (uint64, error)
	// Resize changes the size the guest sees; allocate allocates the new
	// space up front.
	Resize(f *os.File, capacity uint64, allocate bool) error
}

// VolumeCloner is implemented by formats with a cheaper clone than a
// sparse copy of the file (qcow2: a copy-on-write overlay).
type VolumeCloner interface {
	// Clone fills dst, an empty file just created, as a clone of src.
	Clone(dst, src *os.File) error
}

// VolumeWiper is implemented by formats that can erase a volume's content
// while keeping it a valid image; formats other than raw without it refuse
// vol-wipe rather than destroy their metadata.
type VolumeWiper interface {
	Wipe(f *os.File) error
}

// Backing names a copy-on-write volume's backing image.
type Backing struct{ Path, Format string }

// PoolBackends maps pool types to their backends.
var PoolBackends = map[string]PoolBackend{"dir": DirPool{}}

// VolumeFormats maps volume formats to their implementations; "raw" is
// the fallback when no other format's Probe matches.
var VolumeFormats = map[string]VolumeFormat{"raw": RawFormat{}}

// DirPool is the "dir" pool type: a directory of image files.
type DirPool struct{}

// Build creates the target directory with the definition's mode.
func (DirPool) Build(p *domxml.Pool, flags driver.PoolBuildFlags) error {
	mode := os.FileMode(0o755)
	if perm := p.Target.Permissions; perm != nil && perm.Mode != "" {
		if m, err := strconv.ParseUint(perm.Mode, 8, 32); err == nil {
			mode = os.FileMode(m)
		}
	}
	if err := os.MkdirAll(p.Target.Path, mode); err != nil {
		return sysErr("cannot create path '%s'", err, p.Target.Path)
	}
	return nil
}

// Start checks that the target directory exists.
func (DirPool) Start(p *domxml.Pool) error {
	st, err := os.Stat(p.Target.Path)
	if err != nil {
		return sysErr("cannot open directory '%s'", err, p.Target.Path)
	}
	if !st.IsDir() {
		return sysErr("cannot open directory '%s'", unix.ENOTDIR, p.Target.Path)
	}
	return nil
}

// Stop does nothing for a directory.
func (DirPool) Stop(p *domxml.Pool) error { return nil }

// Delete removes the (empty) target directory.
func (DirPool) Delete(p *domxml.Pool) error {
	if err := os.Remove(p.Target.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sysErr("failed to remove pool '%s'", err, p.Target.Path)
	}
	return nil
}

// RawFormat is a plain image: the file's bytes are the disk's.
type RawFormat struct{}

// Probe accepts any file; raw is the fallback.
func (RawFormat) Probe(f *os.File) bool { return true }

// Create sizes the file sparsely and allocates the first allocation bytes.
func (RawFormat) Create(f *os.File, capacity, allocation uint64, backing *Backing) error {
	if backing != nil {
		return driver.Errorf(driver.ErrConfigUnsupported, "backing storage not supported for raw volumes")
	}
	if err := f.Truncate(int64(capacity)); err != nil {
		return sysErr("cannot resize '%s'", err, f.Name())
	}
	if allocation > capacity {
		allocation = capacity
	}
	if allocation > 0 {
		if err := allocate(f, 0, int64(allocation)); err != nil {
			return err
		}
	}
	return nil
}

// Capacity is the file size.
func (RawFormat) Capacity(f *os.File) (uint64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, sysErr("cannot stat '%s'", err, f.Name())
	}
	return uint64(st.Size()), nil
}

// Resize truncates or extends the file, allocating new space when asked.
func (RawFormat) Resize(f *os.File, capacity uint64, alloc bool) error {
	st, err := f.Stat()
	if err != nil {
		return sysErr("cannot stat '%s'", err, f.Name())
	}
	if err := f.Truncate(int64(capacity)); err != nil {
		return sysErr("cannot resize '%s'", err, f.Name())
	}
	if alloc && int64(capacity) > st.Size() {
		return allocate(f, st.Size(), int64(capacity)-st.Size())
	}
	return nil
}

// allocate reserves blocks, writing zeros where fallocate is unsupported.
func allocate(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, off, n)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return sysErr("cannot allocate %d bytes in '%s'", err, n, f.Name())
	}
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := f.WriteAt(zero[:k], off); err != nil {
			return sysErr("cannot write '%s'", err, f.Name())
		}
		off += k
		n -= k
	}
	return nil
}

// probe returns the format of an image file.
func probe(f *os.File) (string, VolumeFormat) {
	names := make([]string, 0, len(VolumeFormats))
	for n := range VolumeFormats {
		if n != "raw" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if VolumeFormats[n].Probe(f) {
			return n, VolumeFormats[n]
		}
	}
	return "raw", VolumeFormats["raw"]
}

func formatFor(name string) (VolumeFormat, error) {
	if name == "" {
		name = "raw"
	}
	vf, ok := VolumeFormats[name]
	if !ok {
		return nil, driver.Errorf(driver.ErrConfigUnsupported, "volume format '%s' is not supported by vsh yet", name)
	}
	return vf, nil
}

// ---- pools ----

type poolObj struct {
	name      string
	def       *domxml.Pool // persistent; nil when transient
	live      *domxml.Pool // active; nil when inactive
	autostart bool
}

func (p *poolObj) cur() *domxml.Pool {
	if p.live != nil {
		return p.live
	}
	return p.def
}

func (c *Conn) poolDefPath(name string) string { return filepath.Join(c.poolDir(), name+".xml") }
func (c *Conn) poolRunPath(name string) string { return filepath.Join(c.runPoolDir(), name) }
func (c *Conn) poolLivePath(name string) string {
	return filepath.Join(c.poolRunPath(name), "live.xml")
}

func (c *Conn) loadPool(name string) (*poolObj, error) {
	if validName("pool", name) != nil {
		return nil, nil
	}
	p := &poolObj{name: name}
	read := func(path string) (*domxml.Pool, error) {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, sysErr("cannot read '%s'", err, path)
		}
		def, err := domxml.ParsePool(path, b, false)
		if err != nil {
			return nil, driver.Errorf(driver.ErrInternal, "stored definition of pool '%s' is invalid: %v", name, err)
		}
		return def, nil
	}
	var err error
	if p.def, err = read(c.poolDefPath(name)); err != nil {
		return nil, err
	}
	if p.live, err = read(c.poolLivePath(name)); err != nil {
		return nil, err
	}
	if p.def == nil && p.live == nil {
		return nil, nil
	}
	p.autostart = p.def != nil && hasMarker(c.poolDir(), name)
	return p, nil
}

func (c *Conn) allPools() ([]*poolObj, error) {
	names, err := listXML(c.poolDir())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	if ents, err := os.ReadDir(c.runPoolDir()); err == nil {
		for _, e := range ents {
			if e.IsDir() && !seen[e.Name()] && !isTemp(e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	var out []*poolObj
	for _, n := range names {
		if p, _ := c.loadPool(n); p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// poolSizes returns capacity, allocation and available bytes of the file
// system holding dir, as libvirt computes them from statfs.
func poolSizes(dir string) (capacity, allocation, available uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, 0, sysErr("cannot statvfs path '%s'", err, dir)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return st.Blocks * bs, (st.Blocks - st.Bfree) * bs, st.Bavail * bs, nil
}

func (c *Conn) poolInfo(p *poolObj) driver.PoolInfo {
	def := p.cur()
	in := driver.PoolInfo{Name: p.name, UUID: def.UUID, Type: def.Type, State: driver.PoolInactive,
		Persistent: p.def != nil, Autostart: p.autostart, TargetPath: def.Target.Path}
	if p.live != nil {
		in.State = driver.PoolRunning
		if cp, al, av, err := poolSizes(def.Target.Path); err == nil {
			in.CapacityBytes, in.AllocationBytes, in.AvailableBytes = cp, al, av
		} else {
			in.State = driver.PoolInaccessible
		}
	}
	return in
}

func (c *Conn) findPool(ref string) (*poolObj, error) {
	if p, err := c.loadPool(ref); p != nil || err != nil {
		return p, err
	}
	if u := normUUID(ref); u != "" {
		all, err := c.allPools()
		if err != nil {
			return nil, err
		}
		for _, p := range all {
			if p.cur().UUID == u {
				return p, nil
			}
		}
	}
	return nil, driver.Errorf(driver.ErrNoStoragePool, "no storage pool with matching name '%s'", ref)
}

// ListPools returns all pools by name.
func (c *Conn) ListPools() ([]driver.PoolInfo, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	all, err := c.allPools()
	if err != nil {
		return nil, err
	}
	out := make([]driver.PoolInfo, 0, len(all))
	for _, p := range all {
		out = append(out, c.poolInfo(p))
	}
	return out, nil
}

// LookupPool finds a pool by name or UUID.
func (c *Conn) LookupPool(ref string) (driver.PoolInfo, error) {
	l, err := c.read()
	if err != nil {
		return driver.PoolInfo{}, err
	}
	defer l.unlock()
	p, err := c.findPool(ref)
	if err != nil {
		return driver.PoolInfo{}, err
	}
	return c.poolInfo(p), nil
}

func (c *Conn) addPool(xml []byte, file string, validate, create bool) (*poolObj, *domxml.Pool, error) {
	def, err := parsePool(file, xml, validate)
	if err != nil {
		return nil, nil, err
	}
	if err := validName("pool", def.Name); err != nil {
		return nil, nil, err
	}
	if _, ok := PoolBackends[def.Type]; !ok {
		return nil, nil, driver.Errorf(driver.ErrConfigUnsupported, "storage pool type '%s' is not supported by vsh yet", def.Type)
	}
	if def.Target.Path == "" || !filepath.IsAbs(def.Target.Path) {
		return nil, nil, driver.Errorf(driver.ErrXML, "missing or relative storage pool target path '%s'", def.Target.Path)
	}
	if err := fillPool(def); err != nil {
		return nil, nil, err
	}
	all, err := c.allPools()
	if err != nil {
		return nil, nil, err
	}
	for _, p := range all {
		cur := p.cur()
		if cur.UUID == def.UUID && p.name != def.Name {
			return nil, nil, driver.Errorf(driver.ErrOperationFailed, "pool '%s' is already defined with uuid %s", p.name, cur.UUID)
		}
		if p.name == def.Name {
			if cur.UUID != def.UUID {
				return nil, nil, driver.Errorf(driver.ErrOperationFailed, "pool '%s' already exists with uuid %s", p.name, cur.UUID)
			}
			if create && p.live != nil {
				return nil, nil, driver.Errorf(driver.ErrOperationInvalid, "pool is already active as '%s'", p.name)
			}
			return p, def, nil
		}
		if filepath.Clean(cur.Target.Path) == filepath.Clean(def.Target.Path) {
			return nil, nil, driver.Errorf(driver.ErrOperationFailed, "Storage source conflict with pool: '%s'", p.name)
		}
	}
	return nil, def, nil
}

// DefinePool defines or redefines a persistent pool.
func (c *Conn) DefinePool(xml []byte, file string, validate bool) (driver.PoolInfo, error) {
	l, err := c.write("virStoragePoolDefineXML")
	if err != nil {
		return driver.PoolInfo{}, err
	}
	defer l.unlock()
	cleanTemps(c.poolDir())
	p, def, err := c.addPool(xml, file, validate, false)
	if err != nil {
		return driver.PoolInfo{}, err
	}
	if err := writeFileAtomic(c.poolDefPath(def.Name), def.XML(), 0o600); err != nil {
		return driver.PoolInfo{}, err
	}
	if p == nil {
		p = &poolObj{name: def.Name}
	}
	p.def = def
	return c.poolInfo(p), nil
}

func (c *Conn) startPool(p *poolObj, def *domxml.Pool) error {
	b := PoolBackends[def.Type]
	if b == nil {
		return driver.Errorf(driver.ErrConfigUnsupported, "storage pool type '%s' is not supported by vsh yet", def.Type)
	}
	if err := b.Start(def); err != nil {
		return err
	}
	dir := c.poolRunPath(p.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Stop(def)
		return sysErr("cannot create directory '%s'", err, dir)
	}
	if err := writeFileAtomic(c.poolLivePath(p.name), def.XML(), 0o600); err != nil {
		b.Stop(def)
		os.RemoveAll(dir)
		return err
	}
	p.live = def
	return nil
}

// CreatePool starts a transient pool.
func (c *Conn) CreatePool(xml []byte, file string, validate bool) (driver.PoolInfo, error) {
	l, err := c.write("virStoragePoolCreateXML")
	if err != nil {
		return driver.PoolInfo{}, err
	}
	defer l.unlock()
	p, def, err := c.addPool(xml, file, validate, true)
	if err != nil {
		return driver.PoolInfo{}, err
	}
	if p == nil {
		p = &poolObj{name: def.Name}
	}
	if err := c.startPool(p, def); err != nil {
		return driver.PoolInfo{}, err
	}
	return c.poolInfo(p), nil
}

func (c *Conn) withPool(api, name string, fn func(*poolObj) error) error {
	l, err := c.write(api)
	if err != nil {
		return err
	}
	defer l.unlock()
	p, err := c.findPool(name)
	if err != nil {
		return err
	}
	return fn(p)
}

func poolActive(p *poolObj) error {
	return driver.Errorf(driver.ErrOperationInvalid, "storage pool '%s' is already active", p.name)
}

func poolInactive(p *poolObj) error {
	return driver.Errorf(driver.ErrOperationInvalid, "storage pool '%s' is not active", p.name)
}

// BuildPool prepares an inactive pool's storage.
func (c *Conn) BuildPool(name string, flags driver.PoolBuildFlags) error {
	return c.withPool("virStoragePoolBuild", name, func(p *poolObj) error {
		if p.live != nil {
			return poolActive(p)
		}
		if flags.Overwrite && flags.NoOverwrite {
			return driver.Errorf(driver.ErrInvalidArg, "Overwrite and no overwrite flags are mutually exclusive")
		}
		return PoolBackends[p.def.Type].Build(p.def, flags)
	})
}

// StartPool activates a pool.
func (c *Conn) StartPool(name string) error {
	return c.withPool("virStoragePoolCreate", name, func(p *poolObj) error {
		if p.live != nil {
			return poolActive(p)
		}
		return c.startPool(p, p.def.Clone())
	})
}

func (c *Conn) stopPool(p *poolObj) error {
	if b := PoolBackends[p.live.Type]; b != nil {
		if err := b.Stop(p.live); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(c.poolRunPath(p.name)); err != nil {
		return sysErr("cannot remove '%s'", err, c.poolRunPath(p.name))
	}
	p.live = nil
	return syncDir(c.runPoolDir())
}

// DestroyPool deactivates a pool; a transient one disappears.
func (c *Conn) DestroyPool(name string) error {
	return c.withPool("virStoragePoolDestroy", name, func(p *poolObj) error {
		if p.live == nil {
			return poolInactive(p)
		}
		return c.stopPool(p)
	})
}

// DeletePool removes an inactive pool's storage.
func (c *Conn) DeletePool(name string) error {
	return c.withPool("virStoragePoolDelete", name, func(p *poolObj) error {
		if p.live != nil {
			return poolActive(p)
		}
		return PoolBackends[p.def.Type].Delete(p.def)
	})
}

// UndefinePool removes an inactive pool's definition.
func (c *Conn) UndefinePool(name string) error {
	return c.withPool("virStoragePoolUndefine", name, func(p *poolObj) error {
		if p.live != nil {
			return poolActive(p)
		}
		if err := setMarker(c.poolDir(), p.name, false); err != nil {
			return err
		}
		return removeFile(c.poolDefPath(p.name))
	})
}

// RefreshPool rescans an active pool; a pool whose directory vanished is
// deactivated, as libvirt does.
func (c *Conn) RefreshPool(name string) error {
	return c.withPool("virStoragePoolRefresh", name, func(p *poolObj) error {
		if p.live == nil {
			return poolInactive(p)
		}
		if _, _, _, err := poolSizes(p.live.Target.Path); err != nil {
			c.stopPool(p)
			return err
		}
		return nil
	})
}

// PoolXML returns the pool's definition with its current sizes.
func (c *Conn) PoolXML(name string, inactive bool) ([]byte, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	p, err := c.findPool(name)
	if err != nil {
		return nil, err
	}
	def := p.def
	if p.live != nil && (!inactive || p.def == nil) {
		def = p.live
	}
	def = def.Clone()
	in := c.poolInfo(p)
	def.SetSizes(in.CapacityBytes, in.AllocationBytes, in.AvailableBytes)
	return def.XML(), nil
}

// SetPoolAutostart marks a persistent pool for autostart.
func (c *Conn) SetPoolAutostart(name string, on bool) error {
	return c.withPool("virStoragePoolSetAutostart", name, func(p *poolObj) error {
		if p.def == nil {
			return driver.Errorf(driver.ErrInternal, "cannot set autostart for transient pool")
		}
		return setMarker(c.poolDir(), p.name, on)
	})
}

// ---- volumes ----

// checkVolName refuses names that are not a plain file name in the pool.
func checkVolName(name string) error {
	if name == "" {
		return driver.Errorf(driver.ErrInvalidArg, "volume name must not be empty")
	}
	if strings.Contains(name, "/") {
		return driver.Errorf(driver.ErrInvalidArg, "volume name '%s' cannot contain '/'", name)
	}
	if name == "." || name == ".." {
		return driver.Errorf(driver.ErrInvalidArg, "volume name '%s' is not allowed", name)
	}
	return nil
}

// volPath returns the path of a volume of an active pool, refusing names
// and symlinks that lead out of the pool.
func volPath(p *poolObj, name string) (string, error) {
	if err := checkVolName(name); err != nil {
		return "", err
	}
	dir := p.live.Target.Path
	path := filepath.Join(dir, name)
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&fs.ModeSymlink == 0 {
		return path, nil
	}
	realDir, err1 := filepath.EvalSymlinks(dir)
	target, err2 := filepath.EvalSymlinks(path)
	if err1 != nil || err2 != nil || filepath.Dir(target) != realDir {
		return "", driver.Errorf(driver.ErrInvalidArg, "volume '%s' is a symbolic link out of pool '%s'", name, p.name)
	}
	return path, nil
}

// volInfo describes the volume file at path.
func volInfo(p *poolObj, name, path string) (driver.VolumeInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return driver.VolumeInfo{}, driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching name '%s'", name)
		}
		return driver.VolumeInfo{}, sysErr("cannot open volume '%s'", err, path)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return driver.VolumeInfo{}, sysErr("cannot stat volume '%s'", err, path)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return driver.VolumeInfo{}, driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching name '%s'", name)
	}
	format, vf := probe(f)
	capacity, err := vf.Capacity(f)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return driver.VolumeInfo{Name: name, Pool: p.name, Key: path, Path: path, Type: "file", Format: format,
		CapacityBytes: capacity, AllocationBytes: uint64(st.Blocks) * 512}, nil
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
	if poolName != "" {
		p, err := c.activePool(poolName)
		if err != nil {
			return nil, driver.VolumeInfo{}, err
		}
		path, err := volPath(p, ref)
		if err != nil {
			return nil, driver.VolumeInfo{}, err
		}
		v, err := volInfo(p, ref, path)
		return p, v, err
	}
	notFound := driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching path '%s'", ref)
	if !filepath.IsAbs(ref) {
		return nil, driver.VolumeInfo{}, notFound
	}
	all, err := c.allPools()
	if err != nil {
		return nil, driver.VolumeInfo{}, err
	}
	clean := filepath.Clean(ref)
	for _, p := range all {
		if p.live == nil || filepath.Dir(clean) != filepath.Clean(p.live.Target.Path) {
			continue
		}
		path, err := volPath(p, filepath.Base(clean))
		if err != nil {
			return nil, driver.VolumeInfo{}, err
		}
		if v, err := volInfo(p, filepath.Base(clean), path); err == nil {
			return p, v, nil
		}
	}
	return nil, driver.VolumeInfo{}, notFound
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

// newVolume creates a volume file of format with the given sizes and
// permission bits; on failure nothing is left behind.
func newVolume(p *poolObj, name, format string, capacity, allocation uint64, mode os.FileMode, backing *Backing) (driver.VolumeInfo, error) {
	vf, err := formatFor(format)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	path, err := volPath(p, name)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	if allocation > capacity {
		allocation = capacity
	}
	if _, _, avail, err := poolSizes(p.live.Target.Path); err == nil && allocation > avail {
		return driver.VolumeInfo{}, driver.Errorf(driver.ErrOperationFailed, "Not enough space left in storage pool")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return driver.VolumeInfo{}, volExists(name)
	}
	if err != nil {
		return driver.VolumeInfo{}, sysErr("cannot create volume '%s'", err, path)
	}
	err = vf.Create(f, capacity, allocation, backing)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = sysErr("cannot write volume '%s'", cerr, path)
	}
	if err != nil {
		os.Remove(path)
		return driver.VolumeInfo{}, err
	}
	return volInfo(p, name, path)
}

func volMode(perm *domxml.Permissions) os.FileMode {
	if perm != nil && perm.Mode != "" {
		if m, err := strconv.ParseUint(perm.Mode, 8, 32); err == nil {
			return os.FileMode(m) & os.ModePerm
		}
	}
	return 0o600
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
		var backing *Backing
		if def.BackingStore != nil && def.BackingStore.Path != "" {
			backing = &Backing{Path: def.BackingStore.Path, Format: def.BackingStore.Format}
		}
		info, err = newVolume(p, def.Name, def.Target.Format, def.CapacityBytes, def.AllocationBytes, volMode(def.Target.Permissions), backing)
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
		var backing *Backing
		if opts.BackingVol != "" {
			bp, bv, err := c.findVol(poolName, opts.BackingVol)
			if err != nil {
				if bp2, bv2, err2 := c.findVol("", opts.BackingVol); err2 == nil {
					bp, bv, err = bp2, bv2, nil
				}
			}
			if err != nil {
				return err
			}
			_ = bp
			format := opts.BackingVolFormat
			if format == "" {
				format = bv.Format
			}
			backing = &Backing{Path: bv.Path, Format: format}
		}
		var err error
		info, err = newVolume(p, opts.Name, opts.Format, opts.CapacityBytes, opts.AllocationBytes, 0o600, backing)
		return err
	})
	return info, err
}

// CloneVolume copies a volume, keeping holes, under a new name in its pool.
func (c *Conn) CloneVolume(src driver.VolumeInfo, newName string) (driver.VolumeInfo, error) {
	var info driver.VolumeInfo
	err := c.withPool("virStorageVolCreateXMLFrom", src.Pool, func(p *poolObj) error {
		_, sv, err := c.findVol(src.Pool, src.Name)
		if err != nil {
			return err
		}
		dst, err := volPath(p, newName)
		if err != nil {
			return err
		}
		in, err := os.Open(sv.Path)
		if err != nil {
			return sysErr("cannot open volume '%s'", err, sv.Path)
		}
		defer in.Close()
		st, err := in.Stat()
		if err != nil {
			return sysErr("cannot stat volume '%s'", err, sv.Path)
		}
		out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
		if errors.Is(err, fs.ErrExist) {
			return volExists(newName)
		}
		if err != nil {
			return sysErr("cannot create volume '%s'", err, dst)
		}
		if cl, ok := VolumeFormats[sv.Format].(VolumeCloner); ok {
			err = cl.Clone(out, in)
		} else {
			err = sparseCopy(out, in, st.Size())
		}
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil && cerr != nil {
			err = sysErr("cannot write volume '%s'", cerr, dst)
		}
		if err != nil {
			os.Remove(dst)
			return err
		}
		info, err = volInfo(p, newName, dst)
		return err
	})
	return info, err
}

// sparseCopy copies size bytes of in to out, copying only the data
// extents (SEEK_DATA/SEEK_HOLE) so holes stay holes.
func sparseCopy(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return sysErr("cannot resize '%s'", err, out.Name())
	}
	buf := make([]byte, 1<<20)
	copyRange := func(off, end int64) error {
		for off < end {
			n := min(int64(len(buf)), end-off)
			k, err := in.ReadAt(buf[:n], off)
			if k > 0 {
				if _, werr := out.WriteAt(buf[:k], off); werr != nil {
					return sysErr("cannot write '%s'", werr, out.Name())
				}
				off += int64(k)
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return sysErr("cannot read '%s'", err, in.Name())
			}
		}
		return nil
	}
	fd := int(in.Fd())
	off := int64(0)
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return copyRange(off, size) // no SEEK_DATA here: copy all
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if err := copyRange(data, min(hole, size)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// DeleteVolume removes a volume file.
func (c *Conn) DeleteVolume(vol driver.VolumeInfo) error {
	return c.withVol("virStorageVolDelete", vol, func(p *poolObj, v driver.VolumeInfo) error {
		return removeFile(v.Path)
	})
}

func (c *Conn) withVol(api string, vol driver.VolumeInfo, fn func(*poolObj, driver.VolumeInfo) error) error {
	l, err := c.write(api)
	if err != nil {
		return err
	}
	defer l.unlock()
	ref := vol.Name
	if vol.Pool == "" {
		ref = vol.Path
	}
	p, v, err := c.findVol(vol.Pool, ref)
	if err != nil {
		return err
	}
	return fn(p, v)
}

// WipeVolume zeroes a volume's content, keeping its size: the blocks are
// deallocated where the file system can punch holes, else overwritten.
func (c *Conn) WipeVolume(vol driver.VolumeInfo) error {
	return c.withVol("virStorageVolWipe", vol, func(p *poolObj, v driver.VolumeInfo) error {
		f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
		if err != nil {
			return sysErr("cannot open volume '%s'", err, v.Path)
		}
		defer f.Close()
		if w, ok := VolumeFormats[v.Format].(VolumeWiper); ok {
			if err := w.Wipe(f); err != nil {
				return err
			}
			return f.Sync()
		}
		if v.Format != "raw" {
			return driver.Errorf(driver.ErrConfigUnsupported, "wiping '%s' volumes is not supported by vsh yet", v.Format)
		}
		st, err := f.Stat()
		if err != nil {
			return sysErr("cannot stat volume '%s'", err, v.Path)
		}
		err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, st.Size())
		if err != nil {
			zero := make([]byte, 1<<20)
			for off := int64(0); off < st.Size(); off += int64(len(zero)) {
				n := min(int64(len(zero)), st.Size()-off)
				if _, err := f.WriteAt(zero[:n], off); err != nil {
					return sysErr("cannot wipe volume '%s'", err, v.Path)
				}
			}
		}
		if err := f.Sync(); err != nil {
			return sysErr("cannot wipe volume '%s'", err, v.Path)
		}
		return nil
	})
}

// ResizeVolume changes a volume's capacity with libvirt's rules.
func (c *Conn) ResizeVolume(vol driver.VolumeInfo, capacityBytes uint64, flags driver.VolumeResizeFlags) error {
	return c.withVol("virStorageVolResize", vol, func(p *poolObj, v driver.VolumeInfo) error {
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
		if target < v.AllocationBytes && v.Format != "raw" {
			return driver.Errorf(driver.ErrInvalidArg, "Can't shrink capacity below current allocation")
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
		f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
		if err != nil {
			return sysErr("cannot open volume '%s'", err, v.Path)
		}
		defer f.Close()
		if err := vf.Resize(f, target, flags.Allocate); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return sysErr("cannot resize volume '%s'", err, v.Path)
		}
		return nil
	})
}

// VolumeXML describes a volume as vol-dumpxml shows it.
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
	_, v, err := c.findVol(vol.Pool, ref)
	if err != nil {
		return nil, err
	}
	return domxml.NewVolume(v.Name, v.CapacityBytes, v.AllocationBytes, v.Format, v.Path).XML(), nil
}
