package local

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"vsh/hypervisor/driver"
	"vsh/hypervisor/storage"
)

// hdrFormat is a minimal image format for exercising the VolumeFormat
// seam: an 8-byte magic, then the guest-visible size, then the data.
type hdrFormat struct{}

var hdrMagic = []byte("VSHTEST\x00")

func (hdrFormat) Probe(path string) bool {
	b := make([]byte, 8)
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	n, _ := f.ReadAt(b, 0)
	return n == 8 && string(b) == string(hdrMagic)
}

func (hdrFormat) Create(p storage.PoolSpec, v storage.VolumeSpec) error {
	path, err := storage.VolumePath(p, v.Name)
	if err != nil {
		return err
	}
	b := make([]byte, 16)
	copy(b, hdrMagic)
	binary.LittleEndian.PutUint64(b[8:], v.CapacityBytes)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(b, 0)
	return err
}

func (hdrFormat) Stat(path string) (storage.VolumeStat, error) {
	st, err := storage.StatVolume(path)
	if err != nil {
		return st, err
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 16 {
		return st, fmt.Errorf("short hdr image: %v", err)
	}
	st.CapacityBytes = binary.LittleEndian.Uint64(b[8:])
	return st, nil
}

func (hdrFormat) Resize(v storage.VolumeStat, capacity uint64, shrink, allocate bool) error {
	f, err := os.OpenFile(v.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, capacity)
	_, err = f.WriteAt(b, 8)
	return err
}

// TestVolumeFormatSeam registers a format the way hypervisor/storage adds
// qcow2 and checks create, probe, capacity, resize and the wipe refusal
// go through it.
func TestVolumeFormatSeam(t *testing.T) {
	VolumeFormats["hdr"] = hdrFormat{}
	defer delete(VolumeFormats, "hdr")
	c := openTemp(t)
	dir := filepath.Join(t.TempDir(), "p")
	os.Mkdir(dir, 0o755)
	_, err := c.CreatePool([]byte("<pool type='dir'><name>p</name><target><path>"+dir+"</path></target></pool>"), "p.xml", false)
	mustDo(t, "create pool", err)
	v, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "img", CapacityBytes: 5 << 30, Format: "hdr"})
	mustDo(t, "create volume", err)
	if v.Format != "hdr" || v.CapacityBytes != 5<<30 {
		t.Fatalf("volume: %+v", v)
	}
	mustDo(t, "resize", c.ResizeVolume(v, 6<<30, driver.VolumeResizeFlags{}))
	if got, _ := c.LookupVolume("p", "img"); got.CapacityBytes != 6<<30 || got.Format != "hdr" {
		t.Errorf("after resize: %+v", got)
	}
	wantErr(t, "wipe", c.WipeVolume(v), "unsupported configuration: wiping 'hdr' volumes is not supported by vsh yet")
	cl, err := c.CloneVolume(v, "copy")
	mustDo(t, "clone", err)
	if cl.Format != "hdr" || cl.CapacityBytes != 6<<30 {
		t.Errorf("clone: %+v", cl)
	}
	// A transient pool disappears when destroyed; its files stay.
	mustDo(t, "destroy", c.DestroyPool("p"))
	if _, err := c.LookupPool("p"); driver.Code(err) != driver.ErrNoStoragePool {
		t.Errorf("transient pool survived destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "copy")); err != nil {
		t.Errorf("volume file lost: %v", err)
	}
}
