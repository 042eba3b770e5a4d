package local

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vsh/hypervisor/driver"
	"vsh/hypervisor/storage"
	"vsh/hypervisor/storage/qcow2"
)

// startDirPool opens a temporary connection with an active dir pool "p"
// and returns both with the pool's directory.
func startDirPool(t *testing.T) (driver.Conn, string) {
	t.Helper()
	c := openTemp(t)
	dir := filepath.Join(t.TempDir(), "pool")
	_, err := c.DefinePool([]byte("<pool type='dir'><name>p</name><target><path>"+dir+"</path></target></pool>"), "p.xml", false)
	mustDo(t, "define pool", err)
	mustDo(t, "build pool", c.BuildPool("p", driver.PoolBuildFlags{}))
	mustDo(t, "start pool", c.StartPool("p"))
	return c, dir
}

func volXML(t *testing.T, c driver.Conn, v driver.VolumeInfo) string {
	t.Helper()
	x, err := c.VolumeXML(v)
	mustDo(t, "vol xml "+v.Name, err)
	return string(x)
}

// TestQcow2Volumes runs qcow2 volumes through the driver: create, backing
// volumes named by name, key or path, preallocated metadata, clone as a
// copy-on-write overlay, resize, wipe and delete.
func TestQcow2Volumes(t *testing.T) {
	c, dir := startDirPool(t)
	base, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "base", CapacityBytes: 64 << 20, Format: "qcow2"})
	mustDo(t, "create qcow2", err)
	if base.Format != "qcow2" || base.CapacityBytes != 64<<20 || base.AllocationBytes == 0 || base.AllocationBytes > 1<<20 {
		t.Fatalf("qcow2 volume: %+v", base)
	}
	if x := volXML(t, c, base); !strings.Contains(x, "<format type='qcow2'/>") || strings.Contains(x, "<backingStore>") {
		t.Errorf("qcow2 vol xml:\n%s", x)
	}
	// Write guest data into the base so the overlays can be checked to
	// read through it.
	img, err := qcow2.Open(base.Path, false)
	mustDo(t, "open base", err)
	_, err = img.WriteAt([]byte("base data"), 1<<20)
	mustDo(t, "write base", err)
	mustDo(t, "close base", img.Close())

	raw, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "raw.img", CapacityBytes: 8 << 20})
	mustDo(t, "create raw", err)

	for _, tc := range []struct {
		name, backing, backingFormat string
		capacity                     uint64
		wantCapacity                 uint64
		wantFormat, wantErr          string
	}{
		{name: "by-name", backing: "base", wantCapacity: 64 << 20, wantFormat: "qcow2"},
		{name: "by-path", backing: base.Path, capacity: 128 << 20, wantCapacity: 128 << 20, wantFormat: "qcow2"},
		{name: "by-key", backing: base.Key, wantCapacity: 64 << 20, wantFormat: "qcow2"},
		{name: "raw-backing", backing: "raw.img", wantCapacity: 8 << 20, wantFormat: "raw"},
		{name: "missing", backing: "nosuch", wantErr: "Storage volume not found: no storage vol with matching name 'nosuch'"},
		{name: "bad-format", backing: "base", backingFormat: "vmdk", wantErr: "unsupported configuration: backing volume format 'vmdk' is not supported by vsh yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: tc.name, CapacityBytes: tc.capacity, Format: "qcow2",
				BackingVol: tc.backing, BackingVolFormat: tc.backingFormat})
			if tc.wantErr != "" {
				wantErr(t, "create", err, tc.wantErr)
				if _, err := os.Stat(filepath.Join(dir, tc.name)); !os.IsNotExist(err) {
					t.Errorf("failed create left a file: %v", err)
				}
				return
			}
			mustDo(t, "create", err)
			if v.CapacityBytes != tc.wantCapacity {
				t.Errorf("capacity %d, want %d", v.CapacityBytes, tc.wantCapacity)
			}
			backingPath := base.Path
			if tc.wantFormat == "raw" {
				backingPath = raw.Path
			}
			want := "<backingStore>\n    <path>" + backingPath + "</path>\n    <format type='" + tc.wantFormat + "'/>\n  </backingStore>"
			if x := volXML(t, c, v); !strings.Contains(x, want) {
				t.Errorf("vol xml lacks %s:\n%s", want, x)
			}
		})
	}
	_, err = c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "raw-cow", CapacityBytes: 1 << 20, BackingVol: "base"})
	wantErr(t, "raw with backing", err, "unsupported configuration: backing storage not supported for raw volumes")

	// --prealloc-metadata allocates the L2 tables up front.
	pre, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "pre", CapacityBytes: 1 << 30, Format: "qcow2", PreallocMetadata: true})
	mustDo(t, "prealloc metadata", err)
	plain, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "plain", CapacityBytes: 1 << 30, Format: "qcow2"})
	mustDo(t, "plain", err)
	if pre.AllocationBytes <= plain.AllocationBytes {
		t.Errorf("prealloc-metadata allocation %d not above plain %d", pre.AllocationBytes, plain.AllocationBytes)
	}

	// From XML, with a backing store.
	xml := "<volume><name>fromxml</name><capacity>0</capacity><target><format type='qcow2'/></target>" +
		"<backingStore><path>" + base.Path + "</path><format type='qcow2'/></backingStore></volume>"
	fx, err := c.CreateVolume("p", []byte(xml), "v.xml", false)
	mustDo(t, "create from xml", err)
	if fx.Format != "qcow2" || fx.CapacityBytes != 64<<20 || !strings.Contains(volXML(t, c, fx), "<path>"+base.Path+"</path>\n    <format type='qcow2'/>\n  </backingStore>") {
		t.Errorf("volume from XML: %+v\n%s", fx, volXML(t, c, fx))
	}

	// Clone: a copy-on-write overlay of the source that reads its data.
	cl, err := c.CloneVolume(base, "clone")
	mustDo(t, "clone", err)
	if cl.Format != "qcow2" || cl.CapacityBytes != base.CapacityBytes || cl.AllocationBytes > 1<<20 {
		t.Errorf("clone: %+v", cl)
	}
	if x := volXML(t, c, cl); !strings.Contains(x, "<backingStore>\n    <path>"+base.Path+"</path>") {
		t.Errorf("clone is not an overlay of base:\n%s", x)
	}
	got := make([]byte, 9)
	ci, err := qcow2.Open(cl.Path, true)
	mustDo(t, "open clone", err)
	ci.ReadAt(got, 1<<20)
	ci.Close()
	if string(got) != "base data" {
		t.Errorf("clone reads %q through its backing file", got)
	}
	_, err = c.CloneVolume(base, "clone")
	wantErr(t, "clone over existing", err, "storage volume 'clone' exists already")

	// Resize: grow, refuse a shrink without the flag and preallocation.
	mustDo(t, "grow", c.ResizeVolume(cl, 96<<20, driver.VolumeResizeFlags{}))
	if v, _ := c.LookupVolume("p", "clone"); v.CapacityBytes != 96<<20 {
		t.Errorf("after grow: %+v", v)
	}
	wantErr(t, "shrink", c.ResizeVolume(cl, 32<<20, driver.VolumeResizeFlags{}),
		"invalid argument: Can't shrink capacity below current capacity unless shrink flag explicitly specified")
	wantErr(t, "allocate", c.ResizeVolume(cl, 128<<20, driver.VolumeResizeFlags{Allocate: true}),
		"Operation not supported: preallocate is only supported for raw type volume")

	// Wipe keeps a valid, empty qcow2 image of the same size and backing.
	mustDo(t, "wipe base", c.WipeVolume(base))
	w, _ := c.LookupVolume("p", "base")
	if w.Format != "qcow2" || w.CapacityBytes != 64<<20 {
		t.Errorf("after wipe: %+v", w)
	}
	bi, err := qcow2.Open(base.Path, true)
	mustDo(t, "open wiped", err)
	bi.ReadAt(got, 1<<20)
	bi.Close()
	if !bytes.Equal(got, make([]byte, 9)) {
		t.Errorf("wiped base still reads %q", got)
	}
	mustDo(t, "wipe overlay", c.WipeVolume(cl))
	if x := volXML(t, c, cl); !strings.Contains(x, "<backingStore>") {
		t.Errorf("wipe lost the backing file:\n%s", x)
	}

	if _, err := exec.LookPath("qemu-img"); err == nil {
		for _, v := range []string{"base", "clone", "by-name", "pre"} {
			out, err := exec.Command("qemu-img", "check", filepath.Join(dir, v)).CombinedOutput()
			if err != nil {
				t.Errorf("qemu-img check %s: %v\n%s", v, err, out)
			}
		}
	}

	vols, err := c.ListVolumes("p")
	mustDo(t, "list", err)
	for _, v := range vols {
		mustDo(t, "delete "+v.Name, c.DeleteVolume(v))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left after deleting every volume: %v", ents)
	}
}

// TestVolumeNameEscapes checks that no operation reaches outside the pool
// through a volume name.
func TestVolumeNameEscapes(t *testing.T) {
	c, dir := startDirPool(t)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "link"))
	os.Symlink("../", filepath.Join(dir, "up"))
	src, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "src", CapacityBytes: 1 << 20})
	mustDo(t, "create src", err)
	slash := func(n string) string {
		return "invalid argument: invalid volume name '" + n + "': volume names cannot contain '/' (they must stay inside pool 'p')"
	}
	for _, tc := range []struct{ name, want string }{
		{"../x", slash("../x")},
		{"/etc/passwd", slash("/etc/passwd")},
		{"a/b", slash("a/b")},
		{"up/x", slash("up/x")},
		{"..", "invalid argument: invalid volume name '..'"},
		{".", "invalid argument: invalid volume name '.'"},
		{"", "invalid argument: invalid volume name ''"},
		{"nul\x00", "invalid argument: invalid volume name 'nul\x00': volume names cannot contain '/' (they must stay inside pool 'p')"},
		{"link", "invalid argument: volume 'link' is a symlink pointing outside pool 'p' (to '" + outside + "')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: tc.name, CapacityBytes: 1, Format: "qcow2"})
			wantErr(t, "create", err, tc.want)
			_, err = c.CloneVolume(src, tc.name)
			wantErr(t, "clone", err, tc.want)
			if tc.name != "" {
				_, err = c.LookupVolume("p", tc.name)
				wantErr(t, "lookup", err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(outside); string(b) != "secret" {
		t.Errorf("file outside the pool changed: %q", b)
	}
	_, err = c.LookupVolume("", outside)
	wantErr(t, "lookup outside path", err, "Storage volume not found: no storage vol with matching path '"+outside+"'")
}

// sparseSource writes a file with data at both ends around a hole.
func sparseSource(t *testing.T, size int64) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.img")
	head := make([]byte, 256<<10)
	rand.Read(head)
	f, err := os.Create(path)
	mustDo(t, "create source", err)
	f.WriteAt(head, 0)
	f.WriteAt([]byte("tail"), size-4)
	f.Close()
	data, err := os.ReadFile(path)
	mustDo(t, "read source", err)
	return path, data
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	mustDo(t, "stat "+path, syscall.Stat(path, &st))
	return st.Blocks * 512
}

// TestUploadDownload checks vol-upload and vol-download through the
// driver: byte-exact round trips, holes kept with Sparse (and only then),
// offsets and lengths, streams that are not files, progress, read-only.
func TestUploadDownload(t *testing.T) {
	const size = 16 << 20
	c, _ := startDirPool(t)
	srcPath, want := sparseSource(t, size)
	vol, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "vol", CapacityBytes: size})
	mustDo(t, "create", err)
	// Old content where the source has a hole must not survive a sparse
	// upload.
	mustDo(t, "prefill", os.WriteFile(vol.Path, bytes.Repeat([]byte{0xaa}, size), 0o600))

	src, _ := os.Open(srcPath)
	var calls int
	var last uint64
	err = c.UploadVolume(vol, src, driver.VolumeTransfer{Sparse: true, Progress: func(done, total uint64) {
		calls++
		if done < last || total != size {
			t.Errorf("progress went %d -> %d of %d", last, done, total)
		}
		last = done
	}})
	src.Close()
	mustDo(t, "sparse upload", err)
	if calls == 0 || last != size {
		t.Errorf("progress: %d calls, last %d", calls, last)
	}
	if got, _ := os.ReadFile(vol.Path); !bytes.Equal(got, want) {
		t.Fatalf("volume differs from the uploaded file")
	}
	if a := allocated(t, vol.Path); a > 1<<20 {
		t.Errorf("sparse upload allocated %d bytes", a)
	}

	dl := func(name string, opts driver.VolumeTransfer) (string, []byte) {
		t.Helper()
		path := filepath.Join(t.TempDir(), name)
		f, err := os.Create(path)
		mustDo(t, "create "+name, err)
		mustDo(t, "download "+name, c.DownloadVolume(vol, f, opts))
		f.Close()
		b, _ := os.ReadFile(path)
		return path, b
	}
	p, got := dl("sparse", driver.VolumeTransfer{Sparse: true})
	if !bytes.Equal(got, want) {
		t.Errorf("sparse download differs")
	}
	if a := allocated(t, p); a > 1<<20 {
		t.Errorf("sparse download allocated %d bytes", a)
	}
	p, got = dl("full", driver.VolumeTransfer{})
	if !bytes.Equal(got, want) {
		t.Errorf("download differs")
	}
	if a := allocated(t, p); a < size {
		t.Errorf("download without --sparse allocated only %d bytes", a)
	}
	if _, got = dl("part", driver.VolumeTransfer{Offset: 100, Length: 1000}); !bytes.Equal(got, want[100:1100]) {
		t.Errorf("partial download differs")
	}
	var buf bytes.Buffer
	mustDo(t, "download to a stream", c.DownloadVolume(vol, &buf, driver.VolumeTransfer{Sparse: true}))
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("stream download differs")
	}

	// Upload from a stream at an offset, with a length shorter than it.
	mustDo(t, "offset upload", c.UploadVolume(vol, strings.NewReader("0123456789"), driver.VolumeTransfer{Offset: 1 << 20, Length: 4}))
	copy(want[1<<20:], "0123")
	if got, _ := os.ReadFile(vol.Path); !bytes.Equal(got, want) {
		t.Errorf("offset upload wrote the wrong bytes")
	}
	err = c.UploadVolume(vol, strings.NewReader("abc"), driver.VolumeTransfer{Length: 10})
	if err == nil || !strings.Contains(err.Error(), "stream ended after 3 of 10 bytes") {
		t.Errorf("short stream: %v", err)
	}
	err = c.DownloadVolume(vol, &buf, driver.VolumeTransfer{Offset: size + 1})
	if err == nil || !strings.Contains(err.Error(), "beyond its size") {
		t.Errorf("offset past the end: %v", err)
	}

	ro, err := driver.Open("vsh:///session", true)
	mustDo(t, "open read-only", err)
	defer ro.Close()
	wantErr(t, "ro upload", ro.UploadVolume(vol, strings.NewReader("x"), driver.VolumeTransfer{}),
		"operation forbidden: read only access prevents virStorageVolUpload")
	wantErr(t, "ro download", ro.DownloadVolume(vol, &buf, driver.VolumeTransfer{}),
		"operation forbidden: read only access prevents virStorageVolDownload")
	wantErr(t, "missing volume", c.UploadVolume(driver.VolumeInfo{Name: "nosuch", Pool: "p"}, strings.NewReader("x"), driver.VolumeTransfer{}),
		"Storage volume not found: no storage vol with matching name 'nosuch'")
}

// TestUnsupportedPoolTypes checks the refusal of pool types vsh cannot
// run yet.
func TestUnsupportedPoolTypes(t *testing.T) {
	c := openTemp(t)
	for _, typ := range []string{"logical", "iscsi", "disk", "rbd"} {
		x := "<pool type='" + typ + "'><name>x</name><source><name>vg</name><device path='/dev/sdz'/><host name='h'/></source><target><path>/dev/vg</path></target></pool>"
		_, err := c.DefinePool([]byte(x), "x.xml", false)
		wantErr(t, typ, err, "unsupported configuration: storage pool type '"+typ+"' is not supported by vsh yet")
	}
}

// TestFSPool mounts an fs pool made from an image file through a loop
// device, inside a private mount namespace (the test binary re-executes
// itself with CLONE_NEWNS), and checks that pool-destroy unmounts it.
func TestFSPool(t *testing.T) {
	if os.Getenv("VSH_LOCAL_FSPOOL_CHILD") == "1" {
		fsPoolChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("fs pool test needs root (mount, loop devices)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed: apt-get install e2fsprogs")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop device support (/dev/loop-control missing)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFSPool$", "-test.v")
	cmd.Env = append(os.Environ(), "VSH_LOCAL_FSPOOL_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "--- SKIP") {
		t.Skipf("child skipped:\n%s", out)
	}
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestFSPool") {
		t.Fatalf("child did not run the test:\n%s", out)
	}
}

func fsPoolChild(t *testing.T) {
	c := openTemp(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	mustDo(t, "image", os.WriteFile(img, nil, 0o600))
	mustDo(t, "size image", os.Truncate(img, 64<<20))
	mnt := filepath.Join(dir, "mnt")
	x := "<pool type='fs'><name>fsp</name><source><device path='" + img + "'/><format type='ext4'/></source>" +
		"<target><path>" + mnt + "</path></target></pool>"
	_, err := c.DefinePool([]byte(x), "fsp.xml", true)
	mustDo(t, "define", err)
	wantErr(t, "build no-overwrite+overwrite", c.BuildPool("fsp", driver.PoolBuildFlags{Overwrite: true, NoOverwrite: true}),
		"invalid argument: Overwrite and no overwrite flags are mutually exclusive")
	mustDo(t, "build", c.BuildPool("fsp", driver.PoolBuildFlags{NoOverwrite: true}))
	if fs, _ := storage.ProbeFilesystem(img); fs != "ext4" {
		t.Fatalf("file system after pool-build: %q", fs)
	}
	if err := c.StartPool("fsp"); err != nil {
		if strings.Contains(err.Error(), "loop") {
			t.Skipf("loop devices unusable here: %v", err)
		}
		t.Fatal(err)
	}
	if m, _ := storage.IsMounted(mnt); !m {
		t.Fatal("pool-start did not mount the pool")
	}
	info, _ := c.LookupPool("fsp")
	if info.State != driver.PoolRunning || info.CapacityBytes == 0 || info.CapacityBytes > 64<<20 {
		t.Errorf("pool info of the mounted pool: %+v", info)
	}
	v, err := c.CreateVolumeAs("fsp", driver.VolumeCreateAs{Name: "disk", CapacityBytes: 1 << 30, Format: "qcow2"})
	mustDo(t, "create volume", err)
	if v.Path != filepath.Join(mnt, "disk") {
		t.Errorf("volume path %s", v.Path)
	}
	wantErr(t, "delete active", c.DeletePool("fsp"), "Requested operation is not valid: storage pool 'fsp' is already active")
	mustDo(t, "destroy", c.DestroyPool("fsp"))
	if m, _ := storage.IsMounted(mnt); m {
		t.Fatal("pool-destroy left the pool mounted")
	}
	if _, err := os.Stat(filepath.Join(mnt, "disk")); !os.IsNotExist(err) {
		t.Errorf("volume visible with the pool unmounted: %v", err)
	}
	// The volume lives on the file system: it is back after a restart.
	mustDo(t, "restart", c.StartPool("fsp"))
	if v2, err := c.LookupVolume("fsp", "disk"); err != nil || v2.Format != "qcow2" || v2.CapacityBytes != 1<<30 {
		t.Errorf("volume after restart: %+v %v", v2, err)
	}
	mustDo(t, "destroy again", c.DestroyPool("fsp"))
	mustDo(t, "delete", c.DeletePool("fsp"))
	if _, err := os.Stat(mnt); !os.IsNotExist(err) {
		t.Errorf("mount point left after pool-delete: %v", err)
	}
}

// TestDamagedQcow2Volume checks that an image with a qcow2 magic but a
// broken header stays listed and deletable, while operations that need
// its metadata fail with an error.
func TestDamagedQcow2Volume(t *testing.T) {
	c, dir := startDirPool(t)
	bad := append([]byte("QFI\xfb\x00\x00\x00\x03"), bytes.Repeat([]byte{0xff}, 4088)...)
	mustDo(t, "write", os.WriteFile(filepath.Join(dir, "bad"), bad, 0o600))
	vols, err := c.ListVolumes("p")
	mustDo(t, "list", err)
	if len(vols) != 1 || vols[0].Name != "bad" || vols[0].Format != "qcow2" || vols[0].CapacityBytes != 4096 {
		t.Fatalf("volumes: %+v", vols)
	}
	if x := volXML(t, c, vols[0]); !strings.Contains(x, "<format type='qcow2'/>") {
		t.Errorf("vol xml:\n%s", x)
	}
	if err := c.ResizeVolume(vols[0], 1<<30, driver.VolumeResizeFlags{}); err == nil {
		t.Errorf("resize of a damaged image succeeded")
	}
	if _, err := c.CloneVolume(vols[0], "copy"); err == nil {
		t.Errorf("clone of a damaged image succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "copy")); !os.IsNotExist(err) {
		t.Errorf("failed clone left a file: %v", err)
	}
	mustDo(t, "delete", c.DeleteVolume(vols[0]))
}

// TestStoragePoolCapabilities checks that pool-capabilities lists what
// the backends and formats support, and refuses the rest.
func TestStoragePoolCapabilities(t *testing.T) {
	c := openTemp(t)
	pc, ok := c.(driver.PoolCapabilities)
	if !ok {
		t.Fatal("the local driver does not describe its pool capabilities")
	}
	x, err := pc.StoragePoolCapabilities()
	mustDo(t, "capabilities", err)
	for _, want := range []string{
		"<pool type='dir' supported='yes'>\n    <volOptions>\n      <defaultFormat type='raw'/>\n      <enum name='targetFormatType'>\n        <value>qcow2</value>\n        <value>raw</value>\n",
		"<pool type='fs' supported='yes'>\n    <poolOptions>\n      <defaultFormat type='auto'/>",
		"<pool type='netfs' supported='yes'>",
		"<pool type='logical' supported='no'/>",
		"<pool type='iscsi' supported='no'/>",
	} {
		if !strings.Contains(string(x), want) {
			t.Errorf("capabilities lack %q:\n%s", want, x)
		}
	}
}

// TestPermissionsFromXML checks that pool and volume permissions of the
// definitions reach the files.
func TestPermissionsFromXML(t *testing.T) {
	c := openTemp(t)
	dir := filepath.Join(t.TempDir(), "perm")
	_, err := c.DefinePool([]byte("<pool type='dir'><name>pp</name><target><path>"+dir+"</path><permissions><mode>0750</mode></permissions></target></pool>"), "pp.xml", false)
	mustDo(t, "define", err)
	mustDo(t, "build", c.BuildPool("pp", driver.PoolBuildFlags{}))
	mustDo(t, "start", c.StartPool("pp"))
	for _, tc := range []struct {
		name, format, mode string
		want               os.FileMode
	}{
		{"raw-0640", "raw", "<permissions><mode>0640</mode></permissions>", 0o640},
		{"qcow2-0604", "qcow2", "<permissions><mode>0604</mode></permissions>", 0o604},
		{"default", "raw", "", 0o600},
	} {
		x := "<volume><name>" + tc.name + "</name><capacity unit='M'>1</capacity><target><format type='" + tc.format + "'/>" + tc.mode + "</target></volume>"
		v, err := c.CreateVolume("pp", []byte(x), "v.xml", false)
		mustDo(t, "create "+tc.name, err)
		fi, err := os.Stat(v.Path)
		mustDo(t, "stat", err)
		if fi.Mode().Perm() != tc.want || v.Format != tc.format || v.CapacityBytes != 1<<20 {
			t.Errorf("%s: mode %o, volume %+v", tc.name, fi.Mode().Perm(), v)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o750 {
		t.Errorf("pool directory mode %o", fi.Mode().Perm())
	}
}
