package vmm

import (
	"fmt"
	"testing"
	"time"

	"vsh/guest/virtiopayload"
	"vsh/hypervisor"
	"vsh/hypervisor/storage"
)

// Benchmark parameters: each phase moves benchOps 4 KiB blocks within a
// region of the same size on a fresh image, so qcow2's sequential write
// phase includes cluster allocation, as a new guest disk's would.
const (
	benchOps      = 4096
	benchDiskSize = 64 << 20
)

// BenchmarkKVMVirtioBlk reports the 4 KiB throughput a guest sees through
// virtio-blk (the virtio payload's benchmark mode on /dev/kvm, timed with
// the guest's TSC) for raw and qcow2 images at queue depths 1 and 8, and
// the same operations issued host-side on the same kind of image through
// the engine's storage backend, for comparison. Metrics are MB/s per
// phase; ns/op is the whole VM run and means little.
func BenchmarkKVMVirtioBlk(b *testing.B) {
	requireKVM(b)
	kernel := virtioPayload(b)
	for _, format := range []hypervisor.DiskFormat{hypervisor.FormatRaw, hypervisor.FormatQcow2} {
		for _, depth := range []int{1, 8} {
			b.Run(fmt.Sprintf("guest/%s/qd%d", format, depth), func(b *testing.B) {
				sum := map[string]float64{}
				for i := 0; i < b.N; i++ {
					path := benchImage(b, format)
					console := runVirtioPayload(b, "vblk-bench", kernel,
						virtiopayload.Cmdline(virtiopayload.ModeBench, benchOps, depth),
						[]hypervisor.Disk{{Path: path, Format: format}}, 0)
					r, err := virtiopayload.ParseBench(console)
					if err != nil {
						b.Fatal(err)
					}
					if r.TSCKHz == 0 {
						b.Fatal("the guest does not know its TSC frequency (no tsc_early_khz)")
					}
					for _, p := range r.Phases {
						sum[p.Name+"-MB/s"] += p.MBPerSec(r.TSCKHz)
						sum[p.Name+"-min-batch-us"] += float64(p.MinBatchCycles) / float64(r.TSCKHz) * 1000
					}
				}
				for name, v := range sum {
					b.ReportMetric(v/float64(b.N), name)
				}
			})
		}
		b.Run(fmt.Sprintf("host/%s", format), func(b *testing.B) {
			sum := map[string]float64{}
			for i := 0; i < b.N; i++ {
				for name, v := range hostBench(b, benchImage(b, format), format) {
					sum[name] += v
				}
			}
			for name, v := range sum {
				b.ReportMetric(v/float64(b.N), name+"-MB/s")
			}
		})
	}
}

// benchImage creates an empty image of benchDiskSize.
func benchImage(b *testing.B, format hypervisor.DiskFormat) string {
	path := tempPath(b, "bench."+string(format))
	if format == hypervisor.FormatQcow2 {
		makeQcow2(b, path, benchDiskSize)
	} else {
		makeRaw(b, path, benchDiskSize)
	}
	return path
}

// hostBench runs the payload's four phases host-side through the storage
// backend the engine's virtio-blk uses, with the payload's block order
// (sequential, then its xorshift sequence), and returns MB/s per phase.
func hostBench(b *testing.B, path string, format hypervisor.DiskFormat) map[string]float64 {
	disk, err := storage.OpenDisk(path, string(format), false, "")
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = virtiopayload.Pattern(0, uint32(i))
	}
	blocks := uint64(benchOps)
	if c := disk.Size() / 4096; c < blocks {
		blocks = c
	}
	state := uint64(0x9e3779b97f4a7c15)
	xorshift := func() uint64 {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return state
	}
	out := map[string]float64{}
	for _, ph := range []struct {
		name          string
		write, random bool
	}{{"seq-write", true, false}, {"seq-read", false, false}, {"rand-write", true, true}, {"rand-read", false, true}} {
		start := time.Now()
		for n := uint64(0); n < benchOps; n++ {
			blk := n % blocks
			if ph.random {
				blk = xorshift() % blocks
			}
			off := int64(blk * 4096)
			if ph.write {
				_, err = disk.WriteAt(buf, off)
			} else {
				_, err = disk.ReadAt(buf, off)
			}
			if err != nil {
				b.Fatalf("%s at %d: %v", ph.name, off, err)
			}
		}
		out[ph.name] = float64(benchOps*4096) / time.Since(start).Seconds() / 1e6
	}
	return out
}
