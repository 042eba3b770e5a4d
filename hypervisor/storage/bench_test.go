package storage

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"vsh/hypervisor/storage/qcow2"
)

// Benchmarks of 4 KiB requests through the disk backends, next to the
// same requests on the plain host file (BenchmarkFile*), with the host
// page cache (cache mode "writeback"). Example:
//
//	go test -run '^$' -bench 'Read4K|Write4K' ./hypervisor/storage/
const benchSize = 64 << 20

type readerWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

func benchOffsets(seq bool, n int) []int64 {
	offs := make([]int64, n)
	r := rand.New(rand.NewSource(1))
	for i := range offs {
		if seq {
			offs[i] = int64(i*4096) % benchSize
		} else {
			offs[i] = int64(r.Intn(benchSize/4096)) * 4096
		}
	}
	return offs
}

func benchIO(b *testing.B, d readerWriterAt, write, seq bool) {
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	offs := benchOffsets(seq, 1<<16)
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := offs[i%len(offs)]
		var err error
		if write {
			_, err = d.WriteAt(buf, off)
		} else {
			_, err = d.ReadAt(buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// benchImage makes a raw or qcow2 image; filled images have every cluster
// allocated (reads hit data, writes overwrite in place), empty ones make
// writes allocate.
func benchImage(b *testing.B, format string, filled bool) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench."+format)
	if format == "raw" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(benchSize)
		f.Close()
	} else if err := qcow2.Create(path, benchSize, qcow2.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if filled {
		d, err := OpenDisk(path, format, false, "")
		if err != nil {
			b.Fatal(err)
		}
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte(i >> 12)
		}
		for off := int64(0); off < benchSize; off += int64(len(chunk)) {
			if _, err := d.WriteAt(chunk, off); err != nil {
				b.Fatal(err)
			}
		}
		d.Close()
	}
	return path
}

func runDiskBench(b *testing.B, format string, write bool) {
	for _, mode := range []struct {
		name string
		seq  bool
	}{{"seq", true}, {"rand", false}} {
		b.Run(mode.name, func(b *testing.B) {
			path := benchImage(b, format, !write || format == "raw")
			if format == "file" {
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				benchIO(b, f, write, mode.seq)
				return
			}
			d, err := OpenDisk(path, format, false, "")
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			benchIO(b, d, write, mode.seq)
		})
	}
}

func BenchmarkFileRead4K(b *testing.B)  { runDiskBenchFile(b, false) }
func BenchmarkFileWrite4K(b *testing.B) { runDiskBenchFile(b, true) }

func runDiskBenchFile(b *testing.B, write bool) {
	for _, mode := range []struct {
		name string
		seq  bool
	}{{"seq", true}, {"rand", false}} {
		b.Run(mode.name, func(b *testing.B) {
			path := benchImage(b, "raw", true)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			benchIO(b, f, write, mode.seq)
		})
	}
}

func BenchmarkRawRead4K(b *testing.B)   { runDiskBench(b, "raw", false) }
func BenchmarkRawWrite4K(b *testing.B)  { runDiskBench(b, "raw", true) }
func BenchmarkQcow2Read4K(b *testing.B) { runDiskBench(b, "qcow2", false) }

// BenchmarkQcow2Write4K writes into an empty image, so the first pass over
// each cluster allocates it (with a copy-on-write of the rest of the
// 64 KiB cluster from zeros).
func BenchmarkQcow2Write4K(b *testing.B) { runDiskBench(b, "qcow2", true) }

// BenchmarkQcow2Overwrite4K writes into a fully allocated image.
func BenchmarkQcow2Overwrite4K(b *testing.B) {
	for _, seq := range []bool{true, false} {
		name := "rand"
		if seq {
			name = "seq"
		}
		b.Run(name, func(b *testing.B) {
			path := benchImage(b, "qcow2", true)
			d, err := OpenDisk(path, "qcow2", false, "")
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			benchIO(b, d, true, seq)
		})
	}
}

// BenchmarkDirect4K measures sequential 4 KiB requests with cache='none'
// (O_DIRECT), comparable with `qemu-img bench -t none`.
func BenchmarkDirect4K(b *testing.B) {
	for _, format := range []string{"raw", "qcow2"} {
		for _, write := range []bool{false, true} {
			name := format + "/read"
			if write {
				name = format + "/write"
			}
			b.Run(name, func(b *testing.B) {
				path := benchImage(b, format, true)
				d, err := OpenDisk(path, format, false, "none")
				if err != nil {
					b.Skip(err)
				}
				defer d.Close()
				benchIO(b, d, write, true)
			})
		}
	}
}
