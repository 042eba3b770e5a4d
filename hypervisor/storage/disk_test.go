package storage

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vsh/hypervisor/storage/qcow2"
)

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func openDisk(t testing.TB, path, format string, ro bool, cache string) Disk {
	t.Helper()
	d, err := OpenDisk(path, format, ro, cache)
	if err != nil {
		t.Fatalf("OpenDisk(%s, %q, ro=%v, %q): %v", path, format, ro, cache, err)
	}
	return d
}

func TestDiskReadWriteAllCacheModes(t *testing.T) {
	const size = 1 << 20
	for _, format := range []string{"raw", "qcow2"} {
		for _, cache := range []string{"", "default", "writeback", "writethrough", "unsafe", "none", "directsync"} {
			t.Run(format+"/"+cache, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "d")
				if format == "raw" {
					writeFile(t, path, make([]byte, size))
				} else if err := qcow2.Create(path, size, qcow2.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				d := openDisk(t, path, "", false, cache)
				if d.Size() != size {
					t.Fatalf("Size = %d", d.Size())
				}
				ref := make([]byte, size)
				r := rand.New(rand.NewSource(3))
				// Unaligned offsets and lengths exercise the O_DIRECT
				// bounce path.
				for i := 0; i < 200; i++ {
					off := r.Intn(size - 1)
					n := 1 + r.Intn(min(size-off, 20000))
					p := make([]byte, n)
					r.Read(p)
					if _, err := d.WriteAt(p, int64(off)); err != nil {
						t.Fatalf("WriteAt(%d, %d): %v", off, n, err)
					}
					copy(ref[off:], p)
					if i%50 == 0 {
						if err := d.Flush(); err != nil {
							t.Fatal(err)
						}
					}
					off = r.Intn(size - 1)
					n = 1 + r.Intn(min(size-off, 20000))
					got := make([]byte, n)
					if _, err := d.ReadAt(got, int64(off)); err != nil {
						t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
					}
					if !bytes.Equal(got, ref[off:off+n]) {
						t.Fatalf("ReadAt(%d, %d) differs", off, n)
					}
				}
				if err := d.WriteZeroes(4096, 128<<10); err != nil {
					t.Fatal(err)
				}
				clear(ref[4096 : 4096+128<<10])
				if _, err := d.WriteAt([]byte{1}, size); err == nil {
					t.Fatal("write past the end succeeded")
				}
				if n, err := d.ReadAt(make([]byte, 8), size-4); n != 4 || !errors.Is(err, io.EOF) {
					t.Fatalf("read across the end: %d %v", n, err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				d = openDisk(t, path, format, true, "")
				defer d.Close()
				got := make([]byte, size)
				if _, err := d.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, ref) {
					t.Fatal("content after reopen differs")
				}
				if _, err := d.WriteAt([]byte{1}, 0); err == nil {
					t.Fatal("write to a read-only disk succeeded")
				}
			})
		}
	}
}

func TestRawDiscardPunchesHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r")
	writeFile(t, path, bytes.Repeat([]byte{7}, 1<<20))
	d := openDisk(t, path, "raw", false, "")
	defer d.Close()
	before, _ := StatVolume(path)
	if err := d.Discard(0, 512<<10); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skip("file system cannot punch holes")
		}
		t.Fatal(err)
	}
	got := make([]byte, 512<<10)
	d.ReadAt(got, 0)
	if !bytes.Equal(got, make([]byte, 512<<10)) {
		t.Fatal("discarded range does not read zeros")
	}
	after, _ := StatVolume(path)
	if after.AllocationBytes >= before.AllocationBytes || after.CapacityBytes != 1<<20 {
		t.Fatalf("allocation %d -> %d, capacity %d", before.AllocationBytes, after.AllocationBytes, after.CapacityBytes)
	}
}

func TestDiskLocking(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.raw")
	writeFile(t, raw, make([]byte, 1<<20))
	tests := []struct {
		name            string
		firstRO, sec    bool
		wantErrOnSecond bool
	}{
		{"rw then rw", false, false, true},
		{"rw then ro", false, true, true},
		{"ro then rw", true, false, true},
		{"ro then ro", true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := openDisk(t, raw, "raw", tc.firstRO, "")
			defer a.Close()
			b, err := OpenDisk(raw, "raw", tc.sec, "")
			if tc.wantErrOnSecond {
				if err == nil || !strings.Contains(err.Error(), "is in use by another domain") {
					t.Fatalf("second open: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
		})
	}
	// After close the lock is gone.
	openDisk(t, raw, "raw", false, "").Close()

	// A qcow2 overlay in use locks its backing file shared.
	top := filepath.Join(dir, "top.qcow2")
	if err := qcow2.Create(top, 0, qcow2.CreateOptions{BackingFile: raw, BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	o := openDisk(t, top, "qcow2", false, "")
	if _, err := OpenDisk(raw, "raw", false, ""); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("backing opened read-write under a running overlay: %v", err)
	}
	ro := openDisk(t, raw, "raw", true, "")
	ro.Close()
	o.Close()
}

func TestProbedQcow2MayNotNameABackingFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, []byte("host data"))
	disk := filepath.Join(dir, "guest.img")
	if err := qcow2.Create(disk, 1<<20, qcow2.CreateOptions{BackingFile: secret, BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDisk(disk, "", true, ""); err == nil || !strings.Contains(err.Error(), "set the disk format explicitly") {
		t.Fatalf("probed overlay: %v", err)
	}
	d := openDisk(t, disk, "qcow2", true, "")
	d.Close()
}

func TestOpenDiskErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	writeFile(t, path, make([]byte, 4096))
	tests := []struct {
		path, format, cache, want string
	}{
		{path, "raw", "bogus", "unknown disk cache mode"},
		{path, "vmdk", "", "not supported"},
		{path + ".missing", "raw", "", "no such file"},
		{path, "qcow2", "", "bad magic"},
	}
	for _, tc := range tests {
		_, err := OpenDisk(tc.path, tc.format, false, tc.cache)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenDisk(%q, %q, %q) = %v, want %q", tc.path, tc.format, tc.cache, err, tc.want)
		}
	}
}

// TestDiskConcurrentIO runs writers on disjoint ranges, readers and
// flushes in parallel (virtio-blk serves requests from several threads);
// run with -race.
func TestDiskConcurrentIO(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c")
			const size = 4 << 20
			if format == "raw" {
				writeFile(t, path, make([]byte, size))
			} else if err := qcow2.Create(path, size, qcow2.CreateOptions{ClusterBits: 12}); err != nil {
				t.Fatal(err)
			}
			d := openDisk(t, path, format, false, "none")
			const workers = 4
			errs := make(chan error, workers*2)
			for w := 0; w < workers; w++ {
				go func(w int) {
					base := int64(w) * size / workers
					p := bytes.Repeat([]byte{byte(w + 1)}, 3000)
					for off := int64(0); off+3000 <= size/workers; off += 3000 {
						if _, err := d.WriteAt(p, base+off); err != nil {
							errs <- err
							return
						}
						if off%(64*3000) == 0 {
							d.Flush()
						}
					}
					errs <- nil
				}(w)
				go func() {
					buf := make([]byte, 5000)
					for i := 0; i < 300; i++ {
						if _, err := d.ReadAt(buf, int64(i*7919)%(size-5000)); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for i := 0; i < workers*2; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d = openDisk(t, path, format, true, "")
			defer d.Close()
			got := make([]byte, size)
			d.ReadAt(got, 0)
			for w := 0; w < workers; w++ {
				base := w * size / workers
				n := (size / workers / 3000) * 3000
				if !bytes.Equal(got[base:base+n], bytes.Repeat([]byte{byte(w + 1)}, n)) {
					t.Fatalf("worker %d's range differs", w)
				}
			}
		})
	}
}

// TestBlockDeviceDisks runs raw and qcow2 disks on a loop device: size
// from BLKGETSIZE64, BLKDISCARD/BLKZEROOUT, and qcow2 allocation that
// starts after the highest cluster in use rather than at the device end.
func TestBlockDeviceDisks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop device support (/dev/loop-control missing)")
	}
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "dev.img")
			const devSize = 8 << 20
			if format == "qcow2" {
				if err := qcow2.Create(file, 64<<20, qcow2.CreateOptions{ClusterBits: 16}); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, file, nil)
			}
			if err := os.Truncate(file, devSize); err != nil {
				t.Fatal(err)
			}
			dev, hold, err := attachLoop(file)
			if err != nil {
				t.Skipf("cannot attach a loop device: %v", err)
			}
			d, err := OpenDisk(dev, format, false, "none")
			hold.Close() // the disk keeps the device (and the loop) alive
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if format == "raw" {
				if d.Size() != devSize {
					t.Fatalf("size %d, want %d", d.Size(), devSize)
				}
				d.WriteAt(bytes.Repeat([]byte{1}, 8192), 0)
				if err := d.WriteZeroes(0, 4096); err != nil && !errors.Is(err, errors.ErrUnsupported) {
					t.Fatal(err)
				}
				if err := d.Discard(1<<20, 1<<20); err != nil && !errors.Is(err, errors.ErrUnsupported) {
					t.Fatal(err)
				}
				got := make([]byte, 8192)
				d.ReadAt(got, 0)
				if !bytes.Equal(got[:4096], make([]byte, 4096)) || got[4096] != 1 {
					t.Fatal("write zeroes on the block device did not zero")
				}
				return
			}
			// The 8 MiB device fills up: the image must say so, not
			// write past the device.
			chunk := bytes.Repeat([]byte{7}, 1<<20)
			var werr error
			written := 0
			for off := int64(0); off < 64<<20 && werr == nil; off += 1 << 20 {
				if _, werr = d.WriteAt(chunk, off); werr == nil {
					written++
				}
			}
			if werr == nil || !strings.Contains(werr.Error(), "no space left") || written < 5 {
				t.Fatalf("after %d MiB: %v", written, werr)
			}
			got := make([]byte, 1<<20)
			d.ReadAt(got, 1<<20)
			if !bytes.Equal(got, chunk) {
				t.Fatal("data on the device differs")
			}
		})
	}
}
