package local

import (
	"errors"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"golang.org/x/sys/unix"

	"vsh/domxml"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/storage"
	"vsh/hypervisor/storage/qcow2"
)

// Storage pools and volumes. The driver keeps pool definitions and their
// active state; what a pool type does on the host (create its directory,
// mount its source) is a PoolBackend, and how a volume file is laid out
// (raw, qcow2) is a VolumeFormat. Volumes of every pool type are files in
// the pool's target directory once the pool is started. The backends and
// formats vsh ships are those of hypervisor/storage; others can be added to
// PoolBackends and VolumeFormats from an init function.

// PoolBackend is the host side of one pool type.
type PoolBackend interface {
	// Build prepares the pool's storage (pool-build): create the target
	// directory, format the source device.
	Build(p *domxml.Pool, flags driver.PoolBuildFlags) error
	// Start makes the target directory usable (pool-start): check it, or
	// mount the source on it.
	Start(p *domxml.Pool) error
	// Stop undoes Start (pool-destroy).
	Stop(p *domxml.Pool) error
	// Delete removes what Build created (pool-delete).
	Delete(p *domxml.Pool) error
}

// VolumeFormat is one on-disk volume format. Paths are inside an active
// pool's target directory, already checked not to leave it.
type VolumeFormat interface {
	// Probe reports whether the regular file at path holds an image of
	// this format.
	Probe(path string) bool
	// Create creates the volume v in pool p. It never overwrites an
	// existing file (the error then wraps fs.ErrExist) and leaves nothing
	// behind on failure.
	Create(p storage.PoolSpec, v storage.VolumeSpec) error
	// Stat describes the volume at path: the capacity the guest sees, the
	// host space allocated, the backing file.
	Stat(path string) (storage.VolumeStat, error)
	// Resize changes the capacity the guest sees; allocate allocates the
	// new space up front.
	Resize(v storage.VolumeStat, capacity uint64, shrink, allocate bool) error
}

// VolumeCloner is implemented by formats with their own clone (qcow2: a
// copy-on-write overlay); other formats are cloned as sparse copies of
// the file.
type VolumeCloner interface {
	Clone(p storage.PoolSpec, src storage.VolumeStat, newName string) error
}

// VolumeWiper is implemented by formats that can erase a volume's content
// while keeping it a valid image; formats without it refuse vol-wipe
// rather than destroy their metadata.
type VolumeWiper interface {
	Wipe(v storage.VolumeStat) error
}

// PoolBackends maps pool types to their backends.
var PoolBackends = map[string]PoolBackend{
	storage.PoolDir:   StoragePool{},
	storage.PoolFS:    StoragePool{},
	storage.PoolNetFS: StoragePool{},
}

// VolumeFormats maps volume formats to their implementations; "raw" is
// the fallback when no other format's Probe matches.
var VolumeFormats = map[string]VolumeFormat{
	storage.FormatRaw:   StorageFormat{storage.FormatRaw},
	storage.FormatQcow2: StorageFormat{storage.FormatQcow2},
}

// StoragePool is the dir, fs and netfs pool types of hypervisor/storage:
// fs and netfs pools mount their source on the target directory when
// started and unmount it when stopped.
type StoragePool struct{}

// poolSpec is what hypervisor/storage needs of a pool definition.
func poolSpec(p *domxml.Pool) storage.PoolSpec {
	s := storage.PoolSpec{Name: p.Name, Type: p.Type, TargetPath: p.Target.Path, Owner: -1, Group: -1,
		SourceDevice: p.Source.Device, SourceHost: p.Source.Host, SourceDir: p.Source.Dir, SourceFormat: p.Source.Format}
	if perm := p.Target.Permissions; perm != nil {
		s.Mode = parseMode(perm.Mode, 0)
		s.Owner, s.Group = perm.Owner, perm.Group
	}
	return s
}

// parseMode parses an octal <mode>, returning def when it is absent or
// not a mode.
func parseMode(s string, def os.FileMode) os.FileMode {
	if m, err := strconv.ParseUint(s, 8, 32); err == nil && s != "" {
		return os.FileMode(m) & os.ModePerm
	}
	return def
}

// Build creates the target directory; for fs pools the overwrite flags
// also format the source device.
func (StoragePool) Build(p *domxml.Pool, flags driver.PoolBuildFlags) error {
	overwrite, noOverwrite := flags.Overwrite, flags.NoOverwrite
	if p.Type != storage.PoolFS {
		// libvirt accepts the flags for every local pool type and only
		// fs pools have a device to format.
		overwrite, noOverwrite = false, false
	}
	return poolErr(p, storage.BuildPool(poolSpec(p), overwrite, noOverwrite))
}

// poolErr is storageErr without hypervisor/storage's "pool 'name': "
// prefix: virsh's first error line already names the pool, as libvirt's
// messages expect.
func poolErr(p *domxml.Pool, err error) error {
	err = storageErr(err)
	if de, ok := err.(*driver.Error); ok {
		de.Detail = strings.TrimPrefix(de.Detail, "pool '"+p.Name+"': ")
	}
	return err
}

// Start checks the target directory and mounts fs and netfs sources.
func (StoragePool) Start(p *domxml.Pool) error { return poolErr(p, storage.StartPool(poolSpec(p))) }

// Stop unmounts fs and netfs pools.
func (StoragePool) Stop(p *domxml.Pool) error { return poolErr(p, storage.StopPool(poolSpec(p))) }

// Delete removes the (empty, unmounted) target directory.
func (StoragePool) Delete(p *domxml.Pool) error { return poolErr(p, storage.DeletePool(poolSpec(p))) }

// poolSizes returns capacity, allocation and available bytes of the file
// system holding dir, as libvirt computes them from statfs.
func poolSizes(dir string) (capacity, allocation, available uint64, err error) {
	capacity, allocation, available, err = storage.PoolUsage(storage.PoolSpec{TargetPath: dir})
	if err != nil {
		return 0, 0, 0, sysErr("cannot statvfs path '%s'", err, dir)
	}
	return capacity, allocation, available, nil
}

// StorageFormat is a volume format of hypervisor/storage: "raw" (sparse
// files, preallocated on request) or "qcow2" (with backing files and
// copy-on-write clones).
type StorageFormat struct{ Name string }

// Probe recognizes qcow2 images by their header; raw accepts any file.
func (f StorageFormat) Probe(path string) bool {
	if f.Name == storage.FormatQcow2 {
		return qcow2.IsQcow2(path)
	}
	return f.Name == storage.FormatRaw
}

// Create creates the volume file with hypervisor/storage.
func (f StorageFormat) Create(p storage.PoolSpec, v storage.VolumeSpec) error {
	v.Format = f.Name
	_, err := storage.CreateVolume(p, v)
	return err
}

// Stat reads sizes and the backing file with hypervisor/storage.
func (f StorageFormat) Stat(path string) (storage.VolumeStat, error) { return storage.StatVolume(path) }

// Resize grows or shrinks the volume with hypervisor/storage.
func (f StorageFormat) Resize(v storage.VolumeStat, capacity uint64, shrink, allocate bool) error {
	return storage.ResizeVolume(v, capacity, shrink, allocate)
}

// Clone makes a qcow2 source's clone a copy-on-write overlay backed by
// it, and a raw source's a sparse copy.
func (f StorageFormat) Clone(p storage.PoolSpec, src storage.VolumeStat, newName string) error {
	_, err := storage.CloneVolume(p, src, newName, true)
	return err
}

// Wipe zeroes a raw volume's data and empties a qcow2 image.
func (f StorageFormat) Wipe(v storage.VolumeStat) error { return storage.WipeVolume(v) }

// probe returns the format of the image file at path.
func probe(path string) (string, VolumeFormat) {
	names := make([]string, 0, len(VolumeFormats))
	for n := range VolumeFormats {
		if n != storage.FormatRaw {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if VolumeFormats[n].Probe(path) {
			return n, VolumeFormats[n]
		}
	}
	return storage.FormatRaw, VolumeFormats[storage.FormatRaw]
}

func formatFor(name string) (VolumeFormat, error) {
	if name == "" {
		name = storage.FormatRaw
	}
	vf, ok := VolumeFormats[name]
	if !ok {
		return nil, driver.Errorf(driver.ErrConfigUnsupported, "volume format '%s' is not supported by vsh yet", name)
	}
	return vf, nil
}

// unsupportedPool is the error for pool types without a backend.
func unsupportedPool(typ string) error {
	return driver.Errorf(driver.ErrConfigUnsupported, "storage pool type '%s' is not supported by vsh yet", typ)
}

// storageErr turns an error of hypervisor/storage into a driver error:
// unsupported pool types are unsupported configurations, errors with an
// errno are system errors (with strerror's capitalized text, as libvirt
// prints them) and the rest are failed operations.
func storageErr(err error) error {
	if err == nil {
		return nil
	}
	var de *driver.Error
	if errors.As(err, &de) {
		return err
	}
	if errors.Is(err, storage.ErrUnsupportedPool) {
		return &driver.Error{Code: driver.ErrConfigUnsupported, Detail: err.Error(), Err: err}
	}
	msg := err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		if s := errno.Error(); s != "" && strings.HasSuffix(msg, s) {
			msg = strings.TrimSuffix(msg, s) + errText(errno)
		}
		return &driver.Error{Code: driver.ErrSystem, Detail: msg, Err: err}
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return &driver.Error{Code: driver.ErrSystem, Detail: msg, Err: err}
	}
	return &driver.Error{Code: driver.ErrOperationFailed, Detail: msg, Err: err}
}

// poolTypes are libvirt's pool types in its capabilities order.
var poolTypes = []string{"dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd", "sheepdog", "gluster", "zfs", "vstorage"}

// sourceFormats are the source formats of the pool types that have them.
var sourceFormats = map[string][]string{
	storage.PoolFS:    {"auto", "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"},
	storage.PoolNetFS: {"auto", "nfs"},
}

// StoragePoolCapabilities describes the pool types with a backend and the
// volume formats, as libvirt's pool-capabilities does; the other pool
// types are listed with supported='no'.
func (c *Conn) StoragePoolCapabilities() ([]byte, error) {
	formats := make([]string, 0, len(VolumeFormats))
	for n := range VolumeFormats {
		formats = append(formats, n)
	}
	sort.Strings(formats)
	doc := etree.NewDocument()
	root := doc.CreateElement("storagepoolCapabilities")
	for _, typ := range poolTypes {
		pool := root.CreateElement("pool")
		pool.CreateAttr("type", typ)
		if PoolBackends[typ] == nil {
			pool.CreateAttr("supported", "no")
			continue
		}
		pool.CreateAttr("supported", "yes")
		if src := sourceFormats[typ]; src != nil {
			opts := pool.CreateElement("poolOptions")
			opts.CreateElement("defaultFormat").CreateAttr("type", src[0])
			enumValues(opts, "sourceFormatType", src)
		}
		opts := pool.CreateElement("volOptions")
		opts.CreateElement("defaultFormat").CreateAttr("type", storage.FormatRaw)
		enumValues(opts, "targetFormatType", formats)
	}
	doc.IndentWithSettings(&etree.IndentSettings{Spaces: 2})
	doc.WriteSettings.AttrSingleQuote = true
	return doc.WriteToBytes()
}

func enumValues(parent *etree.Element, name string, values []string) {
	e := parent.CreateElement("enum")
	e.CreateAttr("name", name)
	for _, v := range values {
		e.CreateElement("value").SetText(v)
	}
}
