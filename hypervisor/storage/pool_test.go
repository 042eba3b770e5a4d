package storage

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDirPoolLifecycle(t *testing.T) {
	root := t.TempDir()
	p := PoolSpec{Name: "p", Type: PoolDir, TargetPath: filepath.Join(root, "a", "b"), Mode: 0o750, Owner: -1, Group: -1}
	if err := StartPool(p); err == nil || !strings.Contains(err.Error(), "cannot open directory") {
		t.Fatalf("start before build: %v", err)
	}
	if err := BuildPool(p, false, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p.TargetPath)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("target %v %v", fi, err)
	}
	// Building again is harmless.
	if err := BuildPool(p, false, false); err != nil {
		t.Fatal(err)
	}
	if err := StartPool(p); err != nil {
		t.Fatal(err)
	}
	capacity, alloc, avail, err := PoolUsage(p)
	if err != nil || capacity == 0 || alloc > capacity || avail > capacity {
		t.Fatalf("usage %d %d %d %v", capacity, alloc, avail, err)
	}
	v, err := CreateVolume(p, VolumeSpec{Name: "v", CapacityBytes: 1 << 20, Owner: -1, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := StopPool(p); err != nil {
		t.Fatal(err)
	}
	if err := DeletePool(p); err == nil {
		t.Fatal("deleted a pool with volumes")
	}
	if err := DeleteVolume(v); err != nil {
		t.Fatal(err)
	}
	if err := DeletePool(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.TargetPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("target still exists")
	}
}

func TestPoolErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		p    PoolSpec
		call func(PoolSpec) error
		want string
	}{
		{"logical start", PoolSpec{Name: "vg", Type: PoolLogical, TargetPath: "/dev/vg"}, StartPool, "'logical' (not implemented yet"},
		{"logical build", PoolSpec{Name: "vg", Type: PoolLogical, TargetPath: "/dev/vg"}, func(p PoolSpec) error { return BuildPool(p, false, false) }, "not supported"},
		{"iscsi", PoolSpec{Name: "i", Type: "iscsi", TargetPath: "/dev/disk/by-path"}, StartPool, "not supported"},
		{"relative target", PoolSpec{Name: "r", Type: PoolDir, TargetPath: "pool"}, StartPool, "must be absolute"},
		{"both flags", PoolSpec{Name: "f", Type: PoolFS, TargetPath: dir, SourceDevice: "/dev/null"}, func(p PoolSpec) error { return BuildPool(p, true, true) }, "mutually exclusive"},
		{"overwrite on dir", PoolSpec{Name: "d", Type: PoolDir, TargetPath: dir, Owner: -1, Group: -1}, func(p PoolSpec) error { return BuildPool(p, true, false) }, "only supported for fs"},
		{"fs without device", PoolSpec{Name: "f", Type: PoolFS, TargetPath: dir}, StartPool, "missing source device"},
		{"netfs without host", PoolSpec{Name: "n", Type: PoolNetFS, TargetPath: dir}, StartPool, "source host"},
		{"netfs cifs", PoolSpec{Name: "n", Type: PoolNetFS, TargetPath: dir, SourceHost: "localhost", SourceDir: "/x", SourceFormat: "cifs"}, StartPool, "only nfs"},
		{"errors wrap ErrUnsupportedPool", PoolSpec{Name: "vg", Type: PoolLogical, TargetPath: "/x"}, func(p PoolSpec) error {
			if err := StartPool(p); !errors.Is(err, ErrUnsupportedPool) {
				return errors.New("not wrapped")
			}
			return errors.New("ok not supported")
		}, "ok not supported"},
	}
	for _, tc := range tests {
		err := tc.call(tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", "/plain": "/plain", `/t\011x`: "/t\tx", `/bad\9`: `/bad\9`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFSPoolMount builds an ext4 file system on an image file and mounts it
// as an fs pool through a loop device, inside a private mount namespace
// (the test binary re-executes itself with CLONE_NEWNS).
func TestFSPoolMount(t *testing.T) {
	if os.Getenv("VSH_FSPOOL_CHILD") == "1" {
		fsPoolChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("fs pool mount test needs root")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed: apt-get install e2fsprogs")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop device support (/dev/loop-control missing)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFSPoolMount$", "-test.v")
	cmd.Env = append(os.Environ(), "VSH_FSPOOL_CHILD=1", "VSH_FSPOOL_DIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "--- SKIP") {
		t.Skipf("child skipped:\n%s", out)
	}
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestFSPoolMount") {
		t.Fatalf("child did not run the test:\n%s", out)
	}
}

func fsPoolChild(t *testing.T) {
	dir := os.Getenv("VSH_FSPOOL_DIR")
	img := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	p := PoolSpec{Name: "fspool", Type: PoolFS, TargetPath: filepath.Join(dir, "mnt"), SourceDevice: img, SourceFormat: "ext4", Owner: -1, Group: -1}
	if err := BuildPool(p, false, true); err != nil {
		t.Fatalf("build (no-overwrite on an empty device): %v", err)
	}
	if fs, _ := ProbeFilesystem(img); fs != "ext4" {
		t.Fatalf("probe after mkfs = %q", fs)
	}
	if err := BuildPool(p, false, true); err == nil || !strings.Contains(err.Error(), "already holds a ext4") {
		t.Fatalf("no-overwrite over ext4: %v", err)
	}
	p.SourceFormat = "auto"
	if err := StartPool(p); err != nil {
		if strings.Contains(err.Error(), "loop") {
			t.Skipf("loop devices unusable here: %v", err)
		}
		t.Fatal(err)
	}
	if m, _ := IsMounted(p.TargetPath); !m {
		t.Fatal("target not mounted after start")
	}
	if err := StartPool(p); err == nil || !strings.Contains(err.Error(), "already mounted") {
		t.Fatalf("second start: %v", err)
	}
	capacity, _, _, err := PoolUsage(p)
	if err != nil || capacity == 0 || capacity > 64<<20 {
		t.Fatalf("usage of the mounted pool: %d %v", capacity, err)
	}
	if _, err := CreateVolume(p, VolumeSpec{Name: "disk.qcow2", Format: "qcow2", CapacityBytes: 1 << 30, Owner: -1, Group: -1}); err != nil {
		t.Fatal(err)
	}
	if err := DeletePool(p); err == nil || !strings.Contains(err.Error(), "still mounted") {
		t.Fatalf("delete while mounted: %v", err)
	}
	if err := StopPool(p); err != nil {
		t.Fatal(err)
	}
	if vols, _ := ScanVolumes(p); len(vols) != 0 {
		t.Fatalf("volumes visible after unmount: %v", vols)
	}
	if err := StartPool(p); err != nil {
		t.Fatal(err)
	}
	vols, err := ScanVolumes(p)
	if err != nil || len(vols) != 2 { // disk.qcow2 and lost+found
		t.Fatalf("after remount: %+v %v", vols, err)
	}
	if err := StopPool(p); err != nil {
		t.Fatal(err)
	}
	if err := DeletePool(p); err != nil {
		t.Fatal(err)
	}
}
