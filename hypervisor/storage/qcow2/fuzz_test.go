package qcow2

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// seedImages returns small valid images (plain, with data, v2-style
// header variants) to start the fuzzers from.
func seedImages(f *testing.F) [][]byte {
	f.Helper()
	dir := f.TempDir()
	var out [][]byte
	// Small clusters keep the inputs small: the fuzzer slows down badly
	// with inputs of hundreds of kilobytes.
	for i, bits := range []int{9, 10, 12} {
		path := filepath.Join(dir, "seed"+string(rune('a'+i)))
		if err := Create(path, 256<<10, CreateOptions{ClusterBits: bits}); err != nil {
			f.Fatal(err)
		}
		img, err := Open(path, false)
		if err != nil {
			f.Fatal(err)
		}
		img.WriteAt(bytes.Repeat([]byte{0xaa}, 3000), 1000)
		img.WriteZeroes(64<<10, 1<<bits)
		img.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzReadHeader(f *testing.F) {
	for _, s := range seedImages(f) {
		f.Add(s[:min(len(s), 4096)])
	}
	f.Add([]byte("QFI\xfb"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			return
		}
		if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
			t.Fatalf("accepted cluster_bits %d", h.ClusterBits)
		}
		if uint64(h.L1Size)*8 > maxL1Bytes || h.CryptMethod != 0 || h.IncompatibleFeatures&^IncompatCompression != 0 {
			t.Fatalf("accepted unsafe header %+v", h)
		}
		if len(h.BackingFile) > maxBackingName {
			t.Fatalf("backing name of %d bytes", len(h.BackingFile))
		}
	})
}

// Run the fuzzers with a short minimization budget, for example
// go test -fuzz FuzzOpen -fuzzminimizetime 50x: minimizing image-sized inputs
// with the default 60s budget stalls the fuzzer.
//
// FuzzOpen opens arbitrary files as images, reads, checks, writes and
// checks again: every failure must be an error, never a panic or a huge
// allocation.
func FuzzOpen(f *testing.F) {
	for _, s := range seedImages(f) {
		f.Add(s, uint32(1000), uint16(100))
	}
	f.Fuzz(func(t *testing.T, data []byte, off uint32, n uint16) {
		if len(data) > 256<<10 {
			return
		}
		path := filepath.Join(t.TempDir(), "fuzz.qcow2")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		img, err := OpenWith(path, Options{ReadOnly: true, CacheBytes: 1 << 20})
		if err != nil {
			return
		}
		buf := make([]byte, int(n)+1)
		img.ReadAt(buf, int64(off))
		img.ReadAt(buf, 0)
		img.Check()
		img.Info()
		img.Close()

		img, err = OpenWith(path, Options{CacheBytes: 1 << 20})
		if err != nil {
			return
		}
		defer img.Close()
		if img.Size() == 0 {
			return
		}
		wo := int64(off) % int64(img.Size())
		wn := min(int64(len(buf)), int64(img.Size())-wo)
		if _, err := img.WriteAt(buf[:wn], wo); err != nil {
			return
		}
		img.Discard(0, min(int64(img.Size()), 1<<20))
		img.Flush()
		img.Check()
	})
}

// FuzzWriteRead drives random writes, zeroing, discards and flushes
// against a raw reference, with and without a backing file.
func FuzzWriteRead(f *testing.F) {
	f.Add(uint8(12), true, []byte{0, 10, 0, 5, 1, 2, 3, 4, 9, 9, 9, 9, 2, 0, 0, 1})
	f.Add(uint8(9), false, bytes.Repeat([]byte{1, 7, 3, 200, 77, 0, 1, 0}, 20))
	f.Fuzz(func(t *testing.T, bits uint8, withBacking bool, prog []byte) {
		clusterBits := 9 + int(bits)%8
		const size = 192 << 10
		dir := t.TempDir()
		ref := make([]byte, size)
		opts := CreateOptions{ClusterBits: clusterBits}
		if withBacking {
			for i := range ref {
				ref[i] = byte(i*7 + i>>9)
			}
			bp := filepath.Join(dir, "base.raw")
			os.WriteFile(bp, ref[:size-3000], 0o600) // shorter than the overlay
			clear(ref[size-3000:])
			opts.BackingFile, opts.BackingFormat = "base.raw", "raw"
		}
		path := filepath.Join(dir, "img.qcow2")
		if err := Create(path, size, opts); err != nil {
			t.Fatal(err)
		}
		img, err := OpenWith(path, Options{CacheBytes: 8 << clusterBits})
		if err != nil {
			t.Fatal(err)
		}
		var ops []op
		for len(prog) >= 8 && len(ops) < 64 {
			o := op{
				kind: int(prog[0] % 4),
				off:  int(binary.LittleEndian.Uint32(prog[1:5]) % size),
				fill: prog[7] | 1,
			}
			o.n = 1 + int(binary.LittleEndian.Uint16(prog[5:7]))%min(size-o.off, 3<<clusterBits)
			ops = append(ops, o)
			prog = prog[8:]
		}
		apply(t, img, ref, ops)
		if got := readAll(t, img); !bytes.Equal(got, ref) {
			t.Fatal("image differs from the reference")
		}
		mustCheck(t, img)
		if err := img.Close(); err != nil {
			t.Fatal(err)
		}
		img, err = Open(path, true)
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		if got := readAll(t, img); !bytes.Equal(got, ref) {
			t.Fatal("reopened image differs from the reference")
		}
	})
}
