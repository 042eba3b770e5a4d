package storage

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func dirPool(t testing.TB) PoolSpec {
	t.Helper()
	p := PoolSpec{Name: "default", Type: PoolDir, TargetPath: filepath.Join(t.TempDir(), "pool"), Mode: 0o711, Owner: -1, Group: -1}
	if err := BuildPool(p, false, false); err != nil {
		t.Fatal(err)
	}
	if err := StartPool(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVolumePathEscapes(t *testing.T) {
	p := dirPool(t)
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(p.TargetPath, "out-dir"))
	os.Symlink("/etc/passwd", filepath.Join(p.TargetPath, "out-file"))
	os.Symlink("../..", filepath.Join(p.TargetPath, "up"))
	writeFile(t, filepath.Join(p.TargetPath, "real"), nil)
	os.Symlink("real", filepath.Join(p.TargetPath, "in-link"))
	tests := []struct {
		name string
		want string // "" = accepted
	}{
		{"disk.img", ""},
		{"in-link", ""},
		{"..x", ""},
		{"../x", "cannot contain '/'"},
		{"/etc/passwd", "cannot contain '/'"},
		{"a/b", "cannot contain '/'"},
		{"..", "invalid volume name"},
		{".", "invalid volume name"},
		{"", "invalid volume name"},
		{"nul\x00", "cannot contain"},
		{"out-dir", "outside pool"},
		{"out-file", "outside pool"},
		{"up", "outside pool"},
	}
	for _, tc := range tests {
		path, err := VolumePath(p, tc.name)
		if tc.want == "" {
			if err != nil || filepath.Dir(path) != p.TargetPath {
				t.Errorf("VolumePath(%q) = %q, %v", tc.name, path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("VolumePath(%q) = %q, %v; want error %q", tc.name, path, err, tc.want)
		}
	}
	// CreateVolume goes through the same check.
	if _, err := CreateVolume(p, VolumeSpec{Name: "../evil", CapacityBytes: 1}); err == nil {
		t.Fatal("created a volume outside the pool")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p.TargetPath), "evil")); err == nil {
		t.Fatal("file created outside the pool")
	}
}

func TestCreateScanStatVolumes(t *testing.T) {
	p := dirPool(t)
	tests := []struct {
		spec                VolumeSpec
		wantFormat          string
		wantCap             uint64
		minAlloc, maxAlloc  uint64
		wantBacking, errSub string
	}{
		{spec: VolumeSpec{Name: "sparse.img", CapacityBytes: 64 << 20, Owner: -1, Group: -1}, wantFormat: "raw", wantCap: 64 << 20, maxAlloc: 64 << 10},
		{spec: VolumeSpec{Name: "alloc.img", CapacityBytes: 8 << 20, AllocationBytes: 4 << 20, Mode: 0o640, Owner: -1, Group: -1}, wantFormat: "raw", wantCap: 8 << 20, minAlloc: 4 << 20, maxAlloc: 5 << 20},
		{spec: VolumeSpec{Name: "base.qcow2", Format: "qcow2", CapacityBytes: 1 << 30, Owner: -1, Group: -1}, wantFormat: "qcow2", wantCap: 1 << 30, maxAlloc: 1 << 20},
		{spec: VolumeSpec{Name: "meta.qcow2", Format: "qcow2", CapacityBytes: 64 << 20, PreallocMetadata: true, Owner: -1, Group: -1}, wantFormat: "qcow2", wantCap: 64 << 20, maxAlloc: 1 << 20},
		{spec: VolumeSpec{Name: "top.qcow2", Format: "qcow2", BackingFormat: "qcow2", Owner: -1, Group: -1}, wantFormat: "qcow2", wantCap: 1 << 30, maxAlloc: 1 << 20, wantBacking: "base.qcow2"},
		{spec: VolumeSpec{Name: "sparse.img", CapacityBytes: 1}, errSub: "already exists"},
		{spec: VolumeSpec{Name: "bad", Format: "vmdk"}, errSub: "not supported"},
		{spec: VolumeSpec{Name: "rawback", BackingPath: "/x"}, errSub: "only supported for qcow2"},
		{spec: VolumeSpec{Name: "pre.qcow2", Format: "qcow2", CapacityBytes: 1 << 20, PreallocMetadata: true, BackingFormat: "qcow2"}, errSub: "cannot be used at the same time"},
	}
	for _, tc := range tests {
		spec := tc.spec
		if tc.wantBacking != "" || strings.HasPrefix(spec.Name, "pre") {
			spec.BackingPath = filepath.Join(p.TargetPath, "base.qcow2")
		}
		st, err := CreateVolume(p, spec)
		if tc.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("CreateVolume(%s) = %v, want %q", spec.Name, err, tc.errSub)
			}
			continue
		}
		if err != nil {
			t.Fatalf("CreateVolume(%s): %v", spec.Name, err)
		}
		if st.Format != tc.wantFormat || st.CapacityBytes != tc.wantCap || st.Type != VolFile {
			t.Errorf("%s: stat %+v", spec.Name, st)
		}
		if st.AllocationBytes < tc.minAlloc || st.AllocationBytes > tc.maxAlloc {
			t.Errorf("%s: allocation %d not in [%d, %d]", spec.Name, st.AllocationBytes, tc.minAlloc, tc.maxAlloc)
		}
		if tc.wantBacking != "" && filepath.Base(st.BackingPath) != tc.wantBacking {
			t.Errorf("%s: backing %q", spec.Name, st.BackingPath)
		}
		wantMode := spec.Mode
		if wantMode == 0 {
			wantMode = 0o600
		}
		if st.Mode != wantMode {
			t.Errorf("%s: mode %v, want %v", spec.Name, st.Mode, wantMode)
		}
	}
	// The failed creations left nothing behind.
	if _, err := os.Stat(filepath.Join(p.TargetPath, "pre.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Error("failed create left a file")
	}
	os.Mkdir(filepath.Join(p.TargetPath, "subdir"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(p.TargetPath, "escape"))
	vols, err := ScanVolumes(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vols {
		names = append(names, v.Name+":"+v.Format)
	}
	if got := strings.Join(names, " "); got != "alloc.img:raw base.qcow2:qcow2 meta.qcow2:qcow2 sparse.img:raw subdir:dir top.qcow2:qcow2" {
		t.Errorf("ScanVolumes = %s", got)
	}
}

func TestCloneVolume(t *testing.T) {
	p := dirPool(t)
	raw, err := CreateVolume(p, VolumeSpec{Name: "a.raw", CapacityBytes: 16 << 20, Owner: -1, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("vsh!"), 1024)
	f, _ := os.OpenFile(raw.Path, os.O_RDWR, 0)
	f.WriteAt(data, 5<<20)
	f.Close()
	raw, _ = StatVolume(raw.Path)

	c, err := CloneVolume(p, raw, "b.raw", true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != "raw" || c.CapacityBytes != raw.CapacityBytes || c.AllocationBytes > raw.AllocationBytes+64<<10 {
		t.Fatalf("clone stat %+v (source %+v)", c, raw)
	}
	a, _ := os.ReadFile(raw.Path)
	b, _ := os.ReadFile(c.Path)
	if !bytes.Equal(a, b) {
		t.Fatal("raw clone differs")
	}
	if _, err := CloneVolume(p, raw, "b.raw", false); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("clone over existing: %v", err)
	}

	q, err := CreateVolume(p, VolumeSpec{Name: "q.qcow2", Format: "qcow2", CapacityBytes: 16 << 20, Owner: -1, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	d := openDisk(t, q.Path, "qcow2", false, "")
	d.WriteAt(data, 3<<20)
	d.Close()
	cow, err := CloneVolume(p, q, "cow.qcow2", true)
	if err != nil {
		t.Fatal(err)
	}
	if cow.Format != "qcow2" || cow.BackingPath != q.Path || cow.CapacityBytes != q.CapacityBytes {
		t.Fatalf("cow clone %+v", cow)
	}
	// A full clone of the overlay is standalone: it carries the backing
	// chain's data and names no backing file.
	full, err := CloneVolume(p, cow, "full.qcow2", false)
	if err != nil {
		t.Fatal(err)
	}
	if full.Format != "qcow2" || full.BackingPath != "" || full.CapacityBytes != q.CapacityBytes || full.AllocationBytes > 1<<20 {
		t.Fatalf("full clone %+v", full)
	}
	for _, v := range []VolumeStat{cow, full} {
		d := openDisk(t, v.Path, v.Format, true, "")
		got := make([]byte, len(data))
		d.ReadAt(got, 3<<20)
		d.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s does not read the source data", v.Name)
		}
	}
	// Writing to the clone leaves the source alone.
	d = openDisk(t, cow.Path, "qcow2", false, "")
	d.WriteAt(bytes.Repeat([]byte{0xff}, 100), 3<<20)
	d.Close()
	d = openDisk(t, q.Path, "qcow2", true, "")
	got := make([]byte, len(data))
	d.ReadAt(got, 3<<20)
	d.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("writing to the cow clone changed the source")
	}
}

func TestResizeVolume(t *testing.T) {
	p := dirPool(t)
	raw, _ := CreateVolume(p, VolumeSpec{Name: "r", CapacityBytes: 1 << 20, Owner: -1, Group: -1})
	q, _ := CreateVolume(p, VolumeSpec{Name: "q", Format: "qcow2", CapacityBytes: 1 << 20, Owner: -1, Group: -1})
	tests := []struct {
		v               VolumeStat
		capacity        uint64
		shrink, alloc   bool
		wantErr         string
		wantCap, minAll uint64
	}{
		{v: raw, capacity: 4 << 20, wantCap: 4 << 20},
		{v: raw, capacity: 8 << 20, alloc: true, wantCap: 8 << 20, minAll: 4 << 20},
		{v: raw, capacity: 2 << 20, wantErr: "Can't shrink"},
		{v: raw, capacity: 2 << 20, shrink: true, wantCap: 2 << 20},
		{v: q, capacity: 10 << 30, wantCap: 10 << 30},
		{v: q, capacity: 1 << 30, wantErr: "Can't shrink"},
		{v: q, capacity: 1 << 30, shrink: true, wantCap: 1 << 30},
		{v: q, capacity: 2 << 30, alloc: true, wantErr: "only supported for raw"},
	}
	for i, tc := range tests {
		cur, _ := StatVolume(tc.v.Path)
		err := ResizeVolume(cur, tc.capacity, tc.shrink, tc.alloc)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%d: err = %v, want %q", i, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		st, _ := StatVolume(tc.v.Path)
		if st.CapacityBytes != tc.wantCap || st.AllocationBytes < tc.minAll {
			t.Errorf("%d: stat %+v", i, st)
		}
	}
	// qcow2 never shrinks over data.
	q, _ = StatVolume(q.Path)
	d := openDisk(t, q.Path, "qcow2", false, "")
	d.WriteAt([]byte("data"), 900<<20)
	d.Close()
	if err := ResizeVolume(q, 512<<20, true, false); err == nil || !strings.Contains(err.Error(), "cannot shrink") {
		t.Fatalf("qcow2 shrink over data: %v", err)
	}
	// A volume in use cannot be resized.
	d = openDisk(t, raw.Path, "raw", false, "")
	defer d.Close()
	cur, _ := StatVolume(raw.Path)
	if err := ResizeVolume(cur, 16<<20, false, false); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("resize of a volume in use: %v", err)
	}
	if err := DeleteVolume(cur); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("delete of a volume in use: %v", err)
	}
}

func TestWipeAndDeleteVolume(t *testing.T) {
	p := dirPool(t)
	raw, _ := CreateVolume(p, VolumeSpec{Name: "r", CapacityBytes: 8 << 20, Owner: -1, Group: -1})
	f, _ := os.OpenFile(raw.Path, os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{9}, 1<<20), 2<<20)
	f.Close()
	before, _ := StatVolume(raw.Path)
	if err := WipeVolume(before); err != nil {
		t.Fatal(err)
	}
	after, _ := StatVolume(raw.Path)
	b, _ := os.ReadFile(raw.Path)
	if !bytes.Equal(b, make([]byte, 8<<20)) {
		t.Fatal("raw wipe left data")
	}
	if after.AllocationBytes > before.AllocationBytes+64<<10 {
		t.Fatalf("wipe grew allocation %d -> %d", before.AllocationBytes, after.AllocationBytes)
	}

	base, _ := CreateVolume(p, VolumeSpec{Name: "base", Format: "qcow2", CapacityBytes: 4 << 20, Owner: -1, Group: -1})
	top, _ := CreateVolume(p, VolumeSpec{Name: "top", Format: "qcow2", BackingPath: base.Path, BackingFormat: "qcow2", Mode: 0o644, Owner: -1, Group: -1})
	d := openDisk(t, base.Path, "qcow2", false, "")
	d.WriteAt([]byte("base"), 0)
	d.Close()
	d = openDisk(t, top.Path, "qcow2", false, "")
	d.WriteAt([]byte("top!"), 4096)
	d.Close()
	if err := WipeVolume(top); err != nil {
		t.Fatal(err)
	}
	st, _ := StatVolume(top.Path)
	if st.BackingPath != base.Path || st.CapacityBytes != 4<<20 || st.Mode != 0o644 {
		t.Fatalf("wiped qcow2 %+v", st)
	}
	d = openDisk(t, top.Path, "qcow2", true, "")
	got := make([]byte, 8192)
	d.ReadAt(got, 0)
	d.Close()
	if string(got[:4]) != "base" || !bytes.Equal(got[4096:4100], make([]byte, 4)) {
		t.Fatalf("wiped overlay reads %q / %q", got[:4], got[4096:4100])
	}
	for _, v := range []VolumeStat{raw, top} {
		if err := DeleteVolume(v); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(v.Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still exists", v.Name)
		}
	}
}

func TestUploadDownload(t *testing.T) {
	p := dirPool(t)
	v, _ := CreateVolume(p, VolumeSpec{Name: "u", CapacityBytes: 4 << 20, Owner: -1, Group: -1})
	payload := bytes.Repeat([]byte("0123456789abcdef"), 100000) // 1.6 MB
	var calls int
	var last uint64
	if err := Upload(v, bytes.NewReader(payload), 1<<20, 0, func(done, total uint64) { calls++; last = done }); err != nil {
		t.Fatal(err)
	}
	if calls < 2 || last != uint64(len(payload)) {
		t.Fatalf("progress calls %d last %d", calls, last)
	}
	if err := Upload(v, bytes.NewReader(payload[:10]), 0, 100, nil); err == nil || !strings.Contains(err.Error(), "stream ended") {
		t.Fatalf("short upload: %v", err)
	}
	want := make([]byte, 4<<20)
	copy(want, payload[:10])
	copy(want[1<<20:], payload)

	// Stream download (zeros written for holes).
	var buf bytes.Buffer
	if err := Download(v, &buf, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("stream download differs (len %d)", buf.Len())
	}
	buf.Reset()
	if err := Download(v, &buf, 1<<20+5, 100, nil); err != nil || !bytes.Equal(buf.Bytes(), want[1<<20+5:1<<20+105]) {
		t.Fatalf("ranged download: %v", err)
	}
	// File download keeps holes.
	out := filepath.Join(t.TempDir(), "out")
	f, _ := os.Create(out)
	if err := Download(v, f, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatal("file download differs")
	}
	st, _ := StatVolume(out)
	if st.AllocationBytes > 3<<20 {
		t.Fatalf("file download is not sparse: %d bytes allocated", st.AllocationBytes)
	}
}

func TestVolumesInteropWithQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed: apt-get install qemu-utils")
	}
	p := dirPool(t)
	base, _ := CreateVolume(p, VolumeSpec{Name: "base.qcow2", Format: "qcow2", CapacityBytes: 32 << 20, Owner: -1, Group: -1})
	top, err := CreateVolume(p, VolumeSpec{Name: "top.qcow2", Format: "qcow2", BackingPath: base.Path, BackingFormat: "qcow2", Owner: -1, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	d := openDisk(t, top.Path, "qcow2", false, "none")
	d.WriteAt(bytes.Repeat([]byte{0x42}, 70000), 12345)
	d.Close()
	out, err := exec.Command("qemu-img", "info", "--backing-chain", top.Path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backing file: "+base.Path) || !strings.Contains(string(out), "virtual size: 32 MiB") {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	if out, err := exec.Command("qemu-img", "check", top.Path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	if err := ResizeVolume(top, 64<<20, false, false); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("qemu-img", "info", top.Path).CombinedOutput()
	if !strings.Contains(string(out), "virtual size: 64 MiB") {
		t.Fatalf("after resize: %s", out)
	}
}
