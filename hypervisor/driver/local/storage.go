package local

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// Storage pools: definitions, active state and their backends (see
// storage_backends.go).

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
		return nil, nil, unsupportedPool(def.Type)
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
		return unsupportedPool(def.Type)
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
		b := PoolBackends[p.def.Type]
		if b == nil {
			return unsupportedPool(p.def.Type)
		}
		return b.Build(p.def, flags)
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
		b := PoolBackends[p.def.Type]
		if b == nil {
			return unsupportedPool(p.def.Type)
		}
		return b.Delete(p.def)
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
