package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func mustCreate(t testing.TB, path string, size uint64, opts CreateOptions) {
	t.Helper()
	if err := Create(path, size, opts); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

func mustOpen(t testing.TB, path string, opts Options) *Image {
	t.Helper()
	img, err := OpenWith(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return img
}

func readAll(t testing.TB, img *Image) []byte {
	t.Helper()
	buf := make([]byte, img.Size())
	if n, err := img.ReadAt(buf, 0); err != nil && err != io.EOF || n != len(buf) {
		t.Fatalf("ReadAt: n=%d err=%v", n, err)
	}
	return buf
}

func mustCheck(t testing.TB, img *Image) {
	t.Helper()
	rep, err := img.Check()
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Check: %d corruptions, %d leaks: %v", rep.Corruptions, rep.Leaks, rep.Messages)
	}
}

// op is one step of a random workload applied to both an image and a
// reference byte slice.
type op struct {
	kind   int // 0 write, 1 zero, 2 discard, 3 flush
	off, n int
	fill   byte
}

func randomOps(r *rand.Rand, size, count int) []op {
	ops := make([]op, count)
	for i := range ops {
		o := op{kind: r.Intn(10), fill: byte(r.Intn(255) + 1)}
		switch {
		case o.kind < 7:
			o.kind = 0
		case o.kind < 8:
			o.kind = 1
		case o.kind < 9:
			o.kind = 2
		default:
			o.kind = 3
		}
		o.off = r.Intn(size)
		o.n = 1 + r.Intn(min(size-o.off, 3*4096))
		ops[i] = o
	}
	return ops
}

// apply runs ops on img and ref. Discard may leave data or zeros, so the
// reference records the image's actual content for discarded ranges.
func apply(t testing.TB, img *Image, ref []byte, ops []op) {
	t.Helper()
	for _, o := range ops {
		switch o.kind {
		case 0:
			p := bytes.Repeat([]byte{o.fill}, o.n)
			if _, err := img.WriteAt(p, int64(o.off)); err != nil {
				t.Fatalf("WriteAt(%d, %d): %v", o.off, o.n, err)
			}
			copy(ref[o.off:], p)
		case 1:
			if err := img.WriteZeroes(int64(o.off), int64(o.n)); err != nil {
				t.Fatalf("WriteZeroes(%d, %d): %v", o.off, o.n, err)
			}
			clear(ref[o.off : o.off+o.n])
		case 2:
			if err := img.Discard(int64(o.off), int64(o.n)); err != nil {
				t.Fatalf("Discard(%d, %d): %v", o.off, o.n, err)
			}
			got := make([]byte, o.n)
			if _, err := img.ReadAt(got, int64(o.off)); err != nil {
				t.Fatalf("ReadAt after discard: %v", err)
			}
			for i, b := range got {
				if b != 0 && b != ref[o.off+i] {
					t.Fatalf("discard at %d exposed byte %#x, want 0 or %#x", o.off+i, b, ref[o.off+i])
				}
			}
			copy(ref[o.off:], got)
		case 3:
			if err := img.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
		}
	}
}

func TestCreateWriteReadReopen(t *testing.T) {
	tests := []struct {
		name  string
		bits  int
		size  uint64
		cache int
		ops   int
	}{
		{"64k clusters", 16, 4 << 20, 0, 300},
		{"512 byte clusters grow reftable", 9, 3 << 20, 0, 600},
		{"4k clusters tiny cache", 12, 2 << 20, 16 << 12, 600},
		{"odd size", 12, 1<<20 + 1536, 0, 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.qcow2")
			mustCreate(t, path, tc.size, CreateOptions{ClusterBits: tc.bits})
			img := mustOpen(t, path, Options{CacheBytes: tc.cache})
			ref := make([]byte, tc.size)
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("new image does not read as zeros")
			}
			r := rand.New(rand.NewSource(int64(tc.bits)))
			apply(t, img, ref, randomOps(r, int(tc.size), tc.ops))
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("content differs before close")
			}
			mustCheck(t, img)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			img = mustOpen(t, path, Options{ReadOnly: true})
			defer img.Close()
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("content differs after reopen")
			}
			mustCheck(t, img)
			qemuCompare(t, path, ref)
		})
	}
}

func TestRefcountOrders(t *testing.T) {
	for _, order := range []uint32{0, 1, 2, 3, 4, 5, 6} {
		b := make([]byte, 64)
		maxv := uint64(1)<<(uint64(1)<<order) - 1
		if order == 6 {
			maxv = ^uint64(0)
		}
		n := uint64(64*8) >> order
		for i := uint64(0); i < n; i++ {
			putRefcount(b, i, order, (i*7)&maxv)
		}
		for i := uint64(0); i < n; i++ {
			if got := getRefcount(b, i, order); got != (i*7)&maxv {
				t.Fatalf("order %d entry %d = %d, want %d", order, i, got, (i*7)&maxv)
			}
		}
	}
}

func TestBackingCopyOnWrite(t *testing.T) {
	for _, bfmt := range []string{"raw", "qcow2"} {
		t.Run(bfmt, func(t *testing.T) {
			dir := t.TempDir()
			const size = 1 << 20
			base := make([]byte, size)
			r := rand.New(rand.NewSource(1))
			r.Read(base)
			basePath := filepath.Join(dir, "base."+bfmt)
			if bfmt == "raw" {
				if err := os.WriteFile(basePath, base, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				mustCreate(t, basePath, size, CreateOptions{ClusterBits: 12})
				b := mustOpen(t, basePath, Options{})
				if _, err := b.WriteAt(base, 0); err != nil {
					t.Fatal(err)
				}
				b.Close()
			}
			top := filepath.Join(dir, "top.qcow2")
			// Relative backing name, resolved against the image directory;
			// size 0 takes the backing size.
			mustCreate(t, top, 0, CreateOptions{ClusterBits: 12, BackingFile: filepath.Base(basePath)})
			img := mustOpen(t, top, Options{})
			if img.Size() != size {
				t.Fatalf("size %d, want %d", img.Size(), size)
			}
			if img.BackingFormat() != bfmt {
				t.Fatalf("backing format %q, want %q", img.BackingFormat(), bfmt)
			}
			ref := append([]byte(nil), base...)
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("overlay does not read the backing data")
			}
			apply(t, img, ref, randomOps(r, size, 200))
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("overlay content differs")
			}
			mustCheck(t, img)
			info, err := img.Info()
			if err != nil || len(info.Chain) != 1 || info.Chain[0].Format != bfmt {
				t.Fatalf("Info = %+v, %v", info, err)
			}
			img.Close()
			// The backing file is untouched.
			b, err := openRef(basePath, bfmt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, base) {
				t.Fatal("backing file was modified")
			}
			qemuCompare(t, top, ref)
		})
	}
}

func openRef(path, format string) ([]byte, error) {
	if format == "raw" {
		return os.ReadFile(path)
	}
	img, err := Open(path, true)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	buf := make([]byte, img.Size())
	_, err = img.ReadAt(buf, 0)
	return buf, err
}

func TestZeroesAndDiscardFreeClusters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "z.qcow2")
	mustCreate(t, path, 1<<20, CreateOptions{ClusterBits: 12})
	img := mustOpen(t, path, Options{})
	defer img.Close()
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	if _, err := img.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	img.Flush()
	if err := img.WriteZeroes(4096, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := img.Discard(128<<10, 128<<10); err != nil {
		t.Fatal(err)
	}
	img.Flush()
	rep, err := img.Check()
	if err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if want := uint64(256 - 16 - 32); rep.AllocatedClusters != want {
		t.Fatalf("allocated clusters %d, want %d", rep.AllocatedClusters, want)
	}
	// Freed clusters are reused before the file grows.
	fi, _ := os.Stat(path)
	if _, err := img.WriteAt(data[:64<<10], 4096); err != nil {
		t.Fatal(err)
	}
	img.Flush()
	fi2, _ := os.Stat(path)
	if fi2.Size() != fi.Size() {
		t.Fatalf("file grew from %d to %d although free clusters existed", fi.Size(), fi2.Size())
	}
	mustCheck(t, img)
}

func TestResize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.qcow2")
	// 512-byte clusters: one L1 entry maps 32 KiB, so growing to 4 MiB
	// needs a bigger L1 table.
	mustCreate(t, path, 64<<10, CreateOptions{ClusterBits: 9})
	img := mustOpen(t, path, Options{})
	if _, err := img.WriteAt([]byte("hello"), 1000); err != nil {
		t.Fatal(err)
	}
	if err := img.Resize(4 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("world"), 4<<20-5); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, img)
	if err := img.Resize(2 << 20); err == nil || !strings.Contains(err.Error(), "cannot shrink") {
		t.Fatalf("shrink over data: err = %v", err)
	}
	if err := img.Discard(4<<20-512, 512); err != nil {
		t.Fatal(err)
	}
	if err := img.Resize(2 << 20); err != nil {
		t.Fatalf("shrink over free space: %v", err)
	}
	img.Close()
	img = mustOpen(t, path, Options{ReadOnly: true})
	defer img.Close()
	if img.Size() != 2<<20 {
		t.Fatalf("size %d", img.Size())
	}
	got := make([]byte, 5)
	img.ReadAt(got, 1000)
	if string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	mustCheck(t, img)
	want := make([]byte, 2<<20)
	copy(want[1000:], "hello")
	qemuCompare(t, path, want)
}

func TestPreallocMetadata(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.qcow2")
	mustCreate(t, path, 8<<20, CreateOptions{PreallocMetadata: true})
	img := mustOpen(t, path, Options{})
	defer img.Close()
	rep, err := img.Check()
	if err != nil || !rep.OK() || rep.AllocatedClusters != rep.TotalClusters {
		t.Fatalf("check %+v %v", rep, err)
	}
	if got := readAll(t, img); !bytes.Equal(got, make([]byte, 8<<20)) {
		t.Fatal("preallocated image is not zero")
	}
	if err := Create(filepath.Join(t.TempDir(), "x"), 1<<20, CreateOptions{PreallocMetadata: true, BackingFile: path}); err == nil {
		t.Fatal("prealloc with backing accepted")
	}
	qemuCompare(t, path, make([]byte, 8<<20))
}

func TestCreateRoundsToSectors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd.qcow2")
	mustCreate(t, path, 1000, CreateOptions{})
	img := mustOpen(t, path, Options{ReadOnly: true})
	defer img.Close()
	if img.Size() != 1024 {
		t.Fatalf("size %d, want 1024", img.Size())
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e")
	os.WriteFile(path, []byte("keep"), 0o644)
	if err := Create(path, 1<<20, CreateOptions{}); err == nil {
		t.Fatal("Create overwrote a file")
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Fatal("existing file changed")
	}
}

func TestBackingLoop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mustCreate(t, b, 1<<20, CreateOptions{})
	mustCreate(t, a, 0, CreateOptions{BackingFile: "b", BackingFormat: "qcow2"})
	os.Remove(b)
	mustCreate(t, b, 1<<20, CreateOptions{BackingFile: "a", BackingFormat: "qcow2"})
	_, err := Open(a, true)
	if err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("loop: err = %v", err)
	}
}

// header returns a valid image's header cluster for mutation.
func validImage(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.qcow2")
	mustCreate(t, path, 1<<20, CreateOptions{ClusterBits: 12})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHeaderRefusals(t *testing.T) {
	be := binary.BigEndian
	tests := []struct {
		name   string
		mutate func(b []byte)
		want   string
	}{
		{"bad magic", func(b []byte) { b[0] = 'X' }, "bad magic"},
		{"version 4", func(b []byte) { be.PutUint32(b[4:], 4) }, "unsupported version"},
		{"cluster bits 8", func(b []byte) { be.PutUint32(b[20:], 8) }, "cluster_bits"},
		{"cluster bits 22", func(b []byte) { be.PutUint32(b[20:], 22) }, "cluster_bits"},
		{"encrypted", func(b []byte) { be.PutUint32(b[32:], 1) }, "encrypted qcow2 images are not supported"},
		{"dirty", func(b []byte) { be.PutUint64(b[72:], IncompatDirty) }, "dirty"},
		{"corrupt", func(b []byte) { be.PutUint64(b[72:], IncompatCorrupt) }, "corrupt"},
		{"unknown feature", func(b []byte) { be.PutUint64(b[72:], 1<<40) }, "unsupported incompatible feature"},
		{"extended l2", func(b []byte) { be.PutUint64(b[72:], IncompatExtendedL2) }, "extended L2"},
		{"refcount order 7", func(b []byte) { be.PutUint32(b[96:], 7) }, "refcount_order"},
		{"huge L1", func(b []byte) { be.PutUint32(b[36:], 1<<30) }, "too large"},
		{"L1 too small", func(b []byte) { be.PutUint64(b[24:], 1<<40) }, "too small"},
		{"L1 past EOF", func(b []byte) { be.PutUint64(b[40:], 1<<40) }, "beyond the end"},
		{"unaligned reftable", func(b []byte) { be.PutUint64(b[48:], 4097) }, "not cluster aligned"},
		{"reftable past EOF", func(b []byte) { be.PutUint32(b[56:], 2000) }, "beyond the end"},
		{"backing name outside", func(b []byte) { be.PutUint64(b[8:], 4000); be.PutUint32(b[16:], 200) }, "outside the header cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := validImage(t)
			tc.mutate(b)
			path := filepath.Join(t.TempDir(), "bad.qcow2")
			os.WriteFile(path, b, 0o644)
			_, err := Open(path, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCompressedClusterRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.qcow2")
	mustCreate(t, path, 1<<20, CreateOptions{ClusterBits: 12})
	img := mustOpen(t, path, Options{})
	img.WriteAt([]byte{1}, 0)
	img.Flush()
	// Turn the first L2 entry into a compressed descriptor.
	l2 := img.l1[0] & offsetMask
	img.Close()
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	var b [8]byte
	f.ReadAt(b[:], int64(l2))
	binary.BigEndian.PutUint64(b[:], binary.BigEndian.Uint64(b[:])&^flagCopied|flagCompressed)
	f.WriteAt(b[:], int64(l2))
	f.Close()
	img = mustOpen(t, path, Options{})
	defer img.Close()
	if _, err := img.ReadAt(make([]byte, 10), 0); err == nil || !strings.Contains(err.Error(), "compressed clusters are not supported") {
		t.Fatalf("read: %v", err)
	}
	if _, err := img.WriteAt(make([]byte, 10), 0); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("write: %v", err)
	}
}

func TestReadOnlyAndBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.qcow2")
	mustCreate(t, path, 1<<20, CreateOptions{})
	img := mustOpen(t, path, Options{ReadOnly: true})
	defer img.Close()
	if _, err := img.WriteAt([]byte{1}, 0); err == nil {
		t.Fatal("write to read-only image succeeded")
	}
	if n, err := img.ReadAt(make([]byte, 10), 1<<20-4); n != 4 || !errors.Is(err, io.EOF) {
		t.Fatalf("read across end: n=%d err=%v", n, err)
	}
	rw := mustOpen(t, path, Options{})
	defer rw.Close()
	if _, err := rw.WriteAt([]byte{1, 2}, 1<<20-1); err == nil {
		t.Fatal("write past the end succeeded")
	}
}

// ---- qemu-img interoperability ----

func needQemu(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed: apt-get install qemu-utils")
	}
}

// qemuCompare runs `qemu-img check` on path and compares `qemu-img convert
// -O raw` output with want.
func qemuCompare(t *testing.T, path string, want []byte) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Log("qemu-img not installed: skipping interop comparison")
		return
	}
	if out, err := exec.Command("qemu-img", "check", "-f", "qcow2", path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	raw := filepath.Join(t.TempDir(), "converted.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	got, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("qemu-img convert output differs from vsh's view (len %d vs %d)", len(got), len(want))
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func TestReadsQemuImages(t *testing.T) {
	needQemu(t)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io not installed: apt-get install qemu-utils")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "4M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 64k", "-c", "write -P 0x11 1M 3k", "-c", "write -z 2M 128k", base)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 32k 8k", "-c", "write -z 0 4k", "-c", "discard 1M 64k", top)

	want := make([]byte, 4<<20)
	for i := range 64 << 10 {
		want[i] = 0xab
	}
	for i := range 3 << 10 {
		want[1<<20+i] = 0x11
	}
	for i := range 8 << 10 {
		want[32<<10+i] = 0xcd
	}
	clear(want[:4096])
	clear(want[1<<20 : 1<<20+64<<10])

	img := mustOpen(t, top, Options{ReadOnly: true})
	defer img.Close()
	if got := readAll(t, img); !bytes.Equal(got, want) {
		t.Fatal("vsh reads different bytes from a qemu-written image")
	}
	mustCheck(t, img)
	info, _ := img.Info()
	if len(info.Chain) != 1 || info.Chain[0].Path != base {
		t.Fatalf("chain %+v", info.Chain)
	}

	// And vsh can write into a qemu image that qemu then reads.
	rw := mustOpen(t, top, Options{})
	copy(want[3<<20:], bytes.Repeat([]byte{0x77}, 5000))
	rw.WriteAt(want[3<<20:3<<20+5000], 3<<20)
	rw.Close()
	qemuCompare(t, top, want)
}

func TestQemuV2Image(t *testing.T) {
	needQemu(t)
	path := filepath.Join(t.TempDir(), "v2.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096", path, "1M")
	img := mustOpen(t, path, Options{})
	if img.Header().Version != 2 {
		t.Fatalf("version %d", img.Header().Version)
	}
	ref := make([]byte, 1<<20)
	apply(t, img, ref, randomOps(rand.New(rand.NewSource(2)), 1<<20, 200))
	mustCheck(t, img)
	img.Close()
	qemuCompare(t, path, ref)
}

func TestQemuCompressedRefused(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "r.raw")
	os.WriteFile(raw, bytes.Repeat([]byte("abcdefgh"), 1<<17), 0o644)
	path := filepath.Join(dir, "c.qcow2")
	run(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, path)
	img := mustOpen(t, path, Options{ReadOnly: true})
	defer img.Close()
	if _, err := img.ReadAt(make([]byte, 512), 0); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("err = %v", err)
	}
	rep, err := img.Check()
	if err != nil || !rep.OK() {
		t.Fatalf("check of compressed image: %+v %v", rep, err)
	}
}

func TestQemuEncryptedRefused(t *testing.T) {
	needQemu(t)
	path := filepath.Join(t.TempDir(), "e.qcow2")
	cmd := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=pw",
		"-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", path, "1M")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("qemu-img cannot create a LUKS image here: %s", out)
	}
	if _, err := Open(path, true); err == nil || !strings.Contains(err.Error(), "encrypted qcow2 images are not supported") {
		t.Fatalf("err = %v", err)
	}
}

func TestShrinkGrowOverBackingReadsZeros(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	os.WriteFile(base, bytes.Repeat([]byte{0xee}, 1<<20), 0o644)
	top := filepath.Join(dir, "top.qcow2")
	mustCreate(t, top, 0, CreateOptions{ClusterBits: 12, BackingFile: base, BackingFormat: "raw"})
	img := mustOpen(t, top, Options{})
	defer img.Close()
	if err := img.Resize(512 << 10); err != nil {
		t.Fatal(err)
	}
	if err := img.Resize(1 << 20); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, img)
	want := append(bytes.Repeat([]byte{0xee}, 512<<10), make([]byte, 512<<10)...)
	if !bytes.Equal(got, want) {
		t.Fatal("backing data reappeared after shrink and grow")
	}
	mustCheck(t, img)
}

func TestQemuRefcountWidthsAndV2Backing(t *testing.T) {
	needQemu(t)
	tests := []struct {
		name, opts string
		backing    bool
	}{
		{"refcount_bits=1", "refcount_bits=1,cluster_size=4096", false},
		{"refcount_bits=8", "refcount_bits=8,cluster_size=4096", false},
		{"refcount_bits=64", "refcount_bits=64,cluster_size=512", false},
		{"2M clusters", "cluster_size=2M", false},
		{"v2 with backing", "compat=0.10,cluster_size=4096", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "q.qcow2")
			ref := make([]byte, 3<<20)
			args := []string{"create", "-q", "-f", "qcow2", "-o", tc.opts}
			if tc.backing {
				base := filepath.Join(dir, "base.raw")
				for i := range ref {
					ref[i] = byte(i % 251)
				}
				os.WriteFile(base, ref, 0o644)
				args = append(args, "-b", base, "-F", "raw")
			}
			run(t, "qemu-img", append(args, path, "3M")...)
			img := mustOpen(t, path, Options{CacheBytes: 64 << 10})
			apply(t, img, ref, randomOps(rand.New(rand.NewSource(9)), len(ref), 300))
			if got := readAll(t, img); !bytes.Equal(got, ref) {
				t.Fatal("content differs")
			}
			mustCheck(t, img)
			img.Close()
			qemuCompare(t, path, ref)
		})
	}
}

func TestCreateLargeSizes(t *testing.T) {
	needQemu(t)
	for _, tc := range []struct {
		size uint64
		bits int
	}{{1 << 40, 16}, {64 << 30, 9}, {1 << 50, 21}} {
		path := filepath.Join(t.TempDir(), "big.qcow2")
		mustCreate(t, path, tc.size, CreateOptions{ClusterBits: tc.bits})
		img := mustOpen(t, path, Options{})
		img.WriteAt([]byte("end"), int64(tc.size-3))
		mustCheck(t, img)
		img.Close()
		if out, err := exec.Command("qemu-img", "check", path).CombinedOutput(); err != nil {
			t.Fatalf("size %d bits %d: qemu-img check: %v\n%s", tc.size, tc.bits, err, out)
		}
	}
}

func TestMapped(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	mustCreate(t, base, 4<<20, CreateOptions{ClusterBits: 12})
	b := mustOpen(t, base, Options{})
	b.WriteAt([]byte{1}, 1<<20)
	b.Close()
	top := filepath.Join(dir, "top.qcow2")
	mustCreate(t, top, 8<<20, CreateOptions{ClusterBits: 12, BackingFile: base})
	img := mustOpen(t, top, Options{})
	defer img.Close()
	img.WriteAt([]byte{2}, 3<<20)
	img.WriteZeroes(1<<20, 4096)
	var mapped []uint64
	for off := uint64(0); off < img.Size(); {
		m, n, err := img.Mapped(off)
		if err != nil || n == 0 {
			t.Fatalf("Mapped(%d) = %v %d %v", off, m, n, err)
		}
		if m {
			mapped = append(mapped, off)
		}
		off += n
	}
	if len(mapped) != 1 || mapped[0] != 3<<20 {
		t.Fatalf("mapped clusters %v, want [%d]", mapped, 3<<20)
	}
}

func TestQemuSnapshotsReadOnly(t *testing.T) {
	needQemu(t)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io not installed: apt-get install qemu-utils")
	}
	path := filepath.Join(t.TempDir(), "s.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", path, "2M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 128k", path)
	run(t, "qemu-img", "snapshot", "-c", "snap1", path)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x22 64k 8k", path)
	if _, err := Open(path, false); err == nil || !strings.Contains(err.Error(), "internal snapshots") {
		t.Fatalf("read-write open of an image with snapshots: %v", err)
	}
	img := mustOpen(t, path, Options{ReadOnly: true})
	defer img.Close()
	want := make([]byte, 2<<20)
	for i := range 128 << 10 {
		want[i] = 0x11
	}
	for i := range 8 << 10 {
		want[64<<10+i] = 0x22
	}
	if got := readAll(t, img); !bytes.Equal(got, want) {
		t.Fatal("active layer of a snapshotted image reads wrong")
	}
	mustCheck(t, img)
}

func TestCheckFindsLeaksAndCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.qcow2")
	mustCreate(t, path, 1<<20, CreateOptions{ClusterBits: 12})
	img := mustOpen(t, path, Options{})
	img.WriteAt([]byte("data"), 0)
	img.Close()
	// Refcount block 0 sits right after the one-cluster refcount table.
	rb := int64(2 * 4096)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	fi, _ := f.Stat()
	last := fi.Size()/4096 - 1 // the data cluster, written last
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], 1)
	f.WriteAt(b[:], rb+2*(last+5)) // a refcount for a cluster nobody uses
	binary.BigEndian.PutUint16(b[:], 0)
	f.WriteAt(b[:], rb+2*last) // the data cluster looks free
	f.Close()
	img = mustOpen(t, path, Options{ReadOnly: true})
	defer img.Close()
	rep, err := img.Check()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Leaks != 1 || rep.Corruptions < 1 {
		t.Fatalf("report %+v", rep)
	}
	if out, err := exec.Command("qemu-img", "check", path).CombinedOutput(); err == nil && len(out) > 0 {
		t.Fatalf("qemu-img check accepts the damaged image:\n%s", out)
	}
}

// TestCrashSnapshotsAreConsistent copies the image file at random moments
// between writes (what a crash would leave if every write issued so far
// reached the disk) and checks that each copy has no corruption — at most
// leaked clusters — and holds everything flushed before the copy.
func TestCrashSnapshotsAreConsistent(t *testing.T) {
	// 512-byte clusters: the refcount table (one cluster) covers 8 MiB of
	// file, so the big variant grows it and allocates refcount blocks.
	t.Run("small", func(t *testing.T) { crashTest(t, 2<<20, 0) })
	t.Run("reftable growth", func(t *testing.T) { crashTest(t, 12<<20, 512<<10) })
}

func crashTest(t *testing.T, size, bigWrite int) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.qcow2")
	mustCreate(t, path, uint64(size), CreateOptions{ClusterBits: 9})
	img := mustOpen(t, path, Options{CacheBytes: 8 << 9})
	defer img.Close()
	r := rand.New(rand.NewSource(5))
	ref := make([]byte, size)
	flushed := make([]byte, size)
	dirty := make([]bool, size) // touched since the last flush
	for round := 0; round < 40; round++ {
		ops := randomOps(r, size, 20)
		if bigWrite > 0 {
			ops = append(ops, op{kind: 0, off: r.Intn(size - bigWrite), n: bigWrite, fill: byte(round + 1)})
		}
		for _, o := range ops {
			if o.kind == 3 {
				continue
			}
			apply(t, img, ref, []op{o})
			for i := o.off; i < o.off+o.n; i++ {
				dirty[i] = true
			}
		}
		if r.Intn(2) == 0 {
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			copy(flushed, ref)
			clear(dirty)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		crash := filepath.Join(dir, "crash.qcow2")
		os.WriteFile(crash, data, 0o600)
		c, err := Open(crash, true)
		if err != nil {
			t.Fatalf("round %d: crash copy does not open: %v", round, err)
		}
		rep, err := c.Check()
		if err != nil || rep.Corruptions != 0 {
			t.Fatalf("round %d: crash copy: %v %+v", round, err, rep)
		}
		got := readAll(t, c)
		c.Close()
		// Bytes nobody touched since the last flush read as flushed.
		for i := range got {
			if !dirty[i] && got[i] != flushed[i] {
				t.Fatalf("round %d: byte %d = %#x, flushed %#x, latest %#x", round, i, got[i], flushed[i], ref[i])
			}
		}
	}
	if h := img.Header(); bigWrite > 0 && h.RefcountTableClusters < 2 {
		t.Fatalf("the refcount table did not grow (%d clusters)", h.RefcountTableClusters)
	}
}
