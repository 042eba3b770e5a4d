package testdriver

import (
	"io"
	"path"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

func (p *pool) used() uint64 {
	var n uint64
	for _, v := range p.vols {
		n += v.def.AllocationBytes
	}
	return n
}

// sizes recomputes the pool's capacity figures the way libvirt's test
// driver does: a fixed capacity less what the volumes allocate.
func (p *pool) sizes() {
	alloc := uint64(defaultPoolAlloc) + p.used()
	avail := uint64(0)
	if alloc < defaultPoolCap {
		avail = defaultPoolCap - alloc
	}
	p.def.SetSizes(defaultPoolCap, alloc, avail)
}

func poolInfo(p *pool) driver.PoolInfo {
	st := driver.PoolInactive
	if p.active {
		st = driver.PoolRunning
	}
	alloc := uint64(defaultPoolAlloc) + p.used()
	avail := uint64(0)
	if alloc < defaultPoolCap {
		avail = defaultPoolCap - alloc
	}
	return driver.PoolInfo{
		Name: p.def.Name, UUID: p.def.UUID, Type: p.def.Type, State: st,
		Persistent: p.persist, Autostart: p.autostart,
		CapacityBytes: defaultPoolCap, AllocationBytes: alloc, AvailableBytes: avail,
		TargetPath: p.def.Target.Path,
	}
}

func (h *host) findPool(ref string) (*pool, error) {
	for _, p := range h.pools {
		if p.def.Name == ref {
			return p, nil
		}
	}
	if u := normUUID(ref); u != "" {
		for _, p := range h.pools {
			if p.def.UUID == u {
				return p, nil
			}
		}
	}
	return nil, driver.Errorf(driver.ErrNoStoragePool, "no storage pool with matching name '%s'", ref)
}

func (h *host) removePool(p *pool) {
	for i, x := range h.pools {
		if x == p {
			h.pools = append(h.pools[:i], h.pools[i+1:]...)
			return
		}
	}
}

func poolActive(p *pool) error {
	return driver.Errorf(driver.ErrOperationInvalid, "storage pool '%s' is active", p.def.Name)
}

func poolInactive(p *pool) error {
	return driver.Errorf(driver.ErrOperationInvalid, "storage pool '%s' is not active", p.def.Name)
}

// ListPools returns all pools in definition order.
func (c *Conn) ListPools() ([]driver.PoolInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	out := make([]driver.PoolInfo, 0, len(c.h.pools))
	for _, p := range c.h.pools {
		out = append(out, poolInfo(p))
	}
	return out, nil
}

// LookupPool finds a pool by name or UUID.
func (c *Conn) LookupPool(ref string) (driver.PoolInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	p, err := c.h.findPool(ref)
	if err != nil {
		return driver.PoolInfo{}, err
	}
	return poolInfo(p), nil
}

// checkPoolDup applies libvirt's uniqueness rules for pools.
func (h *host) checkPoolDup(def *domxml.Pool, checkLive bool) (*pool, error) {
	for _, p := range h.pools {
		if p.def.UUID != def.UUID {
			continue
		}
		if p.def.Name != def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "pool '%s' is already defined with uuid %s", p.def.Name, p.def.UUID)
		}
		if checkLive && p.active {
			return nil, driver.Errorf(driver.ErrOperationInvalid, "pool is already active as '%s'", p.def.Name)
		}
		return p, nil
	}
	for _, p := range h.pools {
		if p.def.Name == def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "pool '%s' already exists with uuid %s", p.def.Name, p.def.UUID)
		}
	}
	return nil, nil
}

func (c *Conn) addPool(xml []byte, file string, validate, create bool) (*pool, error) {
	def, err := parsePool(file, xml, validate)
	if err != nil {
		return nil, err
	}
	if err := fillPool(def); err != nil {
		return nil, err
	}
	p, err := c.h.checkPoolDup(def, create)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = &pool{}
		c.h.pools = append(c.h.pools, p)
	}
	p.def = def
	p.sizes()
	return p, nil
}

// DefinePool defines or redefines a persistent pool.
func (c *Conn) DefinePool(xml []byte, file string, validate bool) (driver.PoolInfo, error) {
	unlock, err := c.lock("virStoragePoolDefineXML")
	if err != nil {
		return driver.PoolInfo{}, err
	}
	defer unlock()
	p, err := c.addPool(xml, file, validate, false)
	if err != nil {
		return driver.PoolInfo{}, err
	}
	p.persist = true
	return poolInfo(p), nil
}

// CreatePool starts a transient pool.
func (c *Conn) CreatePool(xml []byte, file string, validate bool) (driver.PoolInfo, error) {
	unlock, err := c.lock("virStoragePoolCreateXML")
	if err != nil {
		return driver.PoolInfo{}, err
	}
	defer unlock()
	p, err := c.addPool(xml, file, validate, true)
	if err != nil {
		return driver.PoolInfo{}, err
	}
	p.active = true
	return poolInfo(p), nil
}

// withPool runs fn on a pool under the write lock.
func (c *Conn) withPool(api, name string, fn func(*pool) error) error {
	unlock, err := c.lock(api)
	if err != nil {
		return err
	}
	defer unlock()
	p, err := c.h.findPool(name)
	if err != nil {
		return err
	}
	return fn(p)
}

// BuildPool does nothing on the test host beyond libvirt's checks.
func (c *Conn) BuildPool(name string, flags driver.PoolBuildFlags) error {
	return c.withPool("virStoragePoolBuild", name, func(p *pool) error {
		if p.active {
			return poolActive(p)
		}
		return nil
	})
}

// StartPool activates a pool.
func (c *Conn) StartPool(name string) error {
	return c.withPool("virStoragePoolCreate", name, func(p *pool) error {
		if p.active {
			return poolActive(p)
		}
		p.active = true
		return nil
	})
}

// DestroyPool deactivates a pool; a transient one disappears.
func (c *Conn) DestroyPool(name string) error {
	return c.withPool("virStoragePoolDestroy", name, func(p *pool) error {
		if !p.active {
			return poolInactive(p)
		}
		p.active = false
		if !p.persist {
			c.h.removePool(p)
		}
		return nil
	})
}

// DeletePool does nothing on the test host beyond libvirt's checks.
func (c *Conn) DeletePool(name string) error {
	return c.withPool("virStoragePoolDelete", name, func(p *pool) error {
		if p.active {
			return poolActive(p)
		}
		return nil
	})
}

// UndefinePool removes an inactive pool.
func (c *Conn) UndefinePool(name string) error {
	return c.withPool("virStoragePoolUndefine", name, func(p *pool) error {
		if p.active {
			return poolActive(p)
		}
		c.h.removePool(p)
		return nil
	})
}

// RefreshPool checks that the pool is active; the test host has nothing to
// rescan.
func (c *Conn) RefreshPool(name string) error {
	return c.withPool("virStoragePoolRefresh", name, func(p *pool) error {
		if !p.active {
			return poolInactive(p)
		}
		return nil
	})
}

// PoolXML returns the pool's definition with its current sizes.
func (c *Conn) PoolXML(name string, inactive bool) ([]byte, error) {
	unlock, _ := c.lock("")
	defer unlock()
	p, err := c.h.findPool(name)
	if err != nil {
		return nil, err
	}
	p.sizes()
	return p.def.XML(), nil
}

// SetPoolAutostart marks a persistent pool for autostart.
func (c *Conn) SetPoolAutostart(name string, on bool) error {
	return c.withPool("virStoragePoolSetAutostart", name, func(p *pool) error {
		if !p.persist {
			return driver.Errorf(driver.ErrInternal, "cannot set autostart for transient pool")
		}
		p.autostart = on
		return nil
	})
}

func volInfo(p *pool, v *volume) driver.VolumeInfo {
	format := v.def.Target.Format
	if format == "" {
		format = "raw"
	}
	poolName := ""
	if p != nil {
		poolName = p.def.Name
	}
	return driver.VolumeInfo{
		Name: v.def.Name, Pool: poolName, Key: v.path, Path: v.path, Type: "file",
		Format: format, CapacityBytes: v.def.CapacityBytes, AllocationBytes: v.def.AllocationBytes,
	}
}

// ListVolumes returns an active pool's volumes.
func (c *Conn) ListVolumes(poolName string) ([]driver.VolumeInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	p, err := c.h.findPool(poolName)
	if err != nil {
		return nil, err
	}
	if !p.active {
		return nil, driver.Errorf(driver.ErrOperationInvalid, "storage pool is not active")
	}
	out := make([]driver.VolumeInfo, 0, len(p.vols))
	for _, v := range p.vols {
		out = append(out, volInfo(p, v))
	}
	return out, nil
}

// findVol finds a volume by name in poolName, or by path or key in any
// active pool when poolName is "".
func (h *host) findVol(poolName, ref string) (*pool, *volume, error) {
	if poolName != "" {
		p, err := h.findPool(poolName)
		if err != nil {
			return nil, nil, err
		}
		if !p.active {
			return nil, nil, poolInactive(p)
		}
		for _, v := range p.vols {
			if v.def.Name == ref {
				return p, v, nil
			}
		}
		return nil, nil, driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching name '%s'", ref)
	}
	for _, p := range h.pools {
		if !p.active {
			continue
		}
		for _, v := range p.vols {
			if v.path == ref {
				return p, v, nil
			}
		}
	}
	return nil, nil, driver.Errorf(driver.ErrNoStorageVol, "no storage vol with matching path '%s'", ref)
}

// LookupVolume finds a volume by name in a pool, or by path or key.
func (c *Conn) LookupVolume(poolName, ref string) (driver.VolumeInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	p, v, err := c.h.findVol(poolName, ref)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	return volInfo(p, v), nil
}

// addVol places def in the pool after libvirt's test driver checks.
func (h *host) addVol(p *pool, def *domxml.Volume) (*volume, error) {
	if !p.active {
		return nil, poolInactive(p)
	}
	for _, v := range p.vols {
		if v.def.Name == def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "storage vol already exists")
		}
	}
	if uint64(defaultPoolAlloc)+p.used()+def.AllocationBytes > defaultPoolCap {
		return nil, driver.Errorf(driver.ErrInternal, "Not enough free space in pool for volume '%s'", def.Name)
	}
	v := &volume{def: def, path: path.Join(p.def.Target.Path, def.Name)}
	def.SetKey(v.path)
	def.SetPath(v.path)
	p.vols = append(p.vols, v)
	return v, nil
}

// CreateVolume creates an in-memory volume from XML.
func (c *Conn) CreateVolume(poolName string, xml []byte, file string, validate bool) (driver.VolumeInfo, error) {
	if err := c.writable("virStorageVolCreateXML"); err != nil {
		return driver.VolumeInfo{}, err
	}
	def, err := parseVolume(file, xml, validate)
	if err != nil {
		return driver.VolumeInfo{}, err
	}
	var info driver.VolumeInfo
	err = c.withPool("virStorageVolCreateXML", poolName, func(p *pool) error {
		v, err := c.h.addVol(p, def)
		if err != nil {
			return err
		}
		info = volInfo(p, v)
		return nil
	})
	return info, err
}

// CreateVolumeAs creates an in-memory volume from vol-create-as options.
// Without --allocation the volume is fully allocated, as when virsh omits
// <allocation>.
func (c *Conn) CreateVolumeAs(poolName string, opts driver.VolumeCreateAs) (driver.VolumeInfo, error) {
	format := opts.Format
	if format == "" {
		format = "raw"
	}
	alloc := opts.AllocationBytes
	if !opts.AllocationSet {
		alloc = opts.CapacityBytes
	}
	var info driver.VolumeInfo
	err := c.withPool("virStorageVolCreateXML", poolName, func(p *pool) error {
		def := domxml.NewVolume(opts.Name, opts.CapacityBytes, alloc, format, path.Join(p.def.Target.Path, opts.Name))
		v, err := c.h.addVol(p, def)
		if err != nil {
			return err
		}
		info = volInfo(p, v)
		return nil
	})
	return info, err
}

// CloneVolume copies a volume's definition under a new name in its pool.
func (c *Conn) CloneVolume(src driver.VolumeInfo, newName string) (driver.VolumeInfo, error) {
	var info driver.VolumeInfo
	err := c.withPool("virStorageVolCreateXMLFrom", src.Pool, func(p *pool) error {
		_, sv, err := c.h.findVol(src.Pool, src.Name)
		if err != nil {
			return err
		}
		def := domxml.NewVolume(newName, sv.def.CapacityBytes, sv.def.AllocationBytes, sv.def.Target.Format, path.Join(p.def.Target.Path, newName))
		v, err := c.h.addVol(p, def)
		if err != nil {
			return err
		}
		info = volInfo(p, v)
		return nil
	})
	return info, err
}

// DeleteVolume removes a volume.
func (c *Conn) DeleteVolume(vol driver.VolumeInfo) error {
	return c.withPool("virStorageVolDelete", vol.Pool, func(p *pool) error {
		_, v, err := c.h.findVol(vol.Pool, vol.Name)
		if err != nil {
			return err
		}
		for i, x := range p.vols {
			if x == v {
				p.vols = append(p.vols[:i], p.vols[i+1:]...)
			}
		}
		return nil
	})
}

// WipeVolume is not implemented by libvirt's test driver.
func (c *Conn) WipeVolume(vol driver.VolumeInfo) error {
	if err := c.writable("virStorageVolWipe"); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "virStorageVolWipe")
}

// ResizeVolume is not implemented by libvirt's test driver.
func (c *Conn) ResizeVolume(vol driver.VolumeInfo, capacityBytes uint64, flags driver.VolumeResizeFlags) error {
	if err := c.writable("virStorageVolResize"); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "virStorageVolResize")
}

// VolumeXML returns a volume's definition.
func (c *Conn) VolumeXML(vol driver.VolumeInfo) ([]byte, error) {
	unlock, _ := c.lock("")
	defer unlock()
	_, v, err := c.h.findVol(vol.Pool, vol.Name)
	if vol.Pool == "" {
		_, v, err = c.h.findVol("", vol.Path)
	}
	if err != nil {
		return nil, err
	}
	// vol-dumpxml describes the volume in libvirt's layout, whatever the
	// layout of the XML it was created from.
	in := volInfo(nil, v)
	return domxml.NewVolume(in.Name, in.CapacityBytes, in.AllocationBytes, in.Format, in.Path).XML(), nil
}

// UploadVolume is refused as libvirt's test driver refuses it: the test
// host's volumes have no content.
func (c *Conn) UploadVolume(vol driver.VolumeInfo, r io.Reader, opts driver.VolumeTransfer) error {
	if err := c.writable("virStorageVolUpload"); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "virStorageVolUpload")
}

// DownloadVolume is refused as libvirt's test driver refuses it.
func (c *Conn) DownloadVolume(vol driver.VolumeInfo, w io.Writer, opts driver.VolumeTransfer) error {
	if err := c.writable("virStorageVolDownload"); err != nil {
		return err
	}
	return driver.Errorf(driver.ErrNoSupport, "virStorageVolDownload")
}
