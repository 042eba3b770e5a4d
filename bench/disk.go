package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vsh/guest/virtiopayload"
	"vsh/hypervisor/storage"
	"vsh/hypervisor/storage/qcow2"
)

const (
	diskBlock     = 4096     // request size
	diskImageSize = 32 << 20 // image size; sequential passes cover all of it
	diskRandomOps = 4096     // random requests per pass
)

// blockIO is what both a host file and a storage.Disk offer.
type blockIO interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
}

// diskPattern is one access pattern of figure 6.
type diskPattern struct {
	name    string
	write   bool
	offsets []int64
}

func diskPatterns() []diskPattern {
	seq := make([]int64, diskImageSize/diskBlock)
	for i := range seq {
		seq[i] = int64(i) * diskBlock
	}
	rng := rand.New(rand.NewPCG(1, 2)) // the same offsets for every backend and run
	random := make([]int64, diskRandomOps)
	for i := range random {
		random[i] = rng.Int64N(diskImageSize/diskBlock) * diskBlock
	}
	return []diskPattern{
		{"sequential read", false, seq},
		{"random read", false, random},
		{"sequential write", true, seq},
		{"random write", true, random},
	}
}

// alignedBlock returns a 4 KiB buffer aligned for O_DIRECT.
func alignedBlock() []byte {
	b := make([]byte, 2*diskBlock)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (diskBlock - 1))
	if off != 0 {
		off = diskBlock - off
	}
	return b[off : off+diskBlock]
}

// runPattern issues the pattern's requests one at a time (queue depth 1)
// and returns the throughput in MiB/s.
func runPattern(dev blockIO, p diskPattern) (float64, error) {
	buf := alignedBlock()
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	for _, off := range p.offsets {
		var err error
		if p.write {
			_, err = dev.WriteAt(buf, off)
		} else {
			_, err = dev.ReadAt(buf, off)
		}
		if err != nil {
			return 0, fmt.Errorf("%s at %d: %w", p.name, off, err)
		}
	}
	return mibPerSec(len(p.offsets), time.Since(start)), nil
}

func mibPerSec(ops int, d time.Duration) float64 {
	return float64(ops) * diskBlock / (1 << 20) / d.Seconds()
}

// hostFile opens path with O_DIRECT: the host file's own throughput.
type hostFile struct{ *os.File }

func openHostFile(path string) (hostFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	return hostFile{f}, err
}

// fillImage writes every block of an image through the storage layer so
// that reads and writes hit allocated data (no qcow2 cluster allocation
// in the timed passes).
func fillImage(path, format string) error {
	d, err := storage.OpenDisk(path, format, false, "none")
	if err != nil {
		return err
	}
	buf := alignedBlock()
	for off := int64(0); off < diskImageSize; off += diskBlock {
		buf[0] = byte(off >> 12)
		if _, err := d.WriteAt(buf, off); err != nil {
			d.Close()
			return err
		}
	}
	if err := d.Flush(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

var qemuImgRE = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

// qemuImgBench runs `qemu-img bench` sequentially over the whole image at
// queue depth 1 with O_DIRECT and returns MiB/s.
func qemuImgBench(qemuImg, path, format string, write bool) (float64, error) {
	ops := diskImageSize / diskBlock
	args := []string{"bench", "-f", format, "-t", "none", "-d", "1", "-c", strconv.Itoa(ops), "-s", strconv.Itoa(diskBlock), "-S", strconv.Itoa(diskBlock)}
	if write {
		args = append(args, "-w")
	}
	out, err := exec.Command(qemuImg, append(args, path)...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("qemu-img bench: %w: %s", err, firstLine(string(out)))
	}
	m := qemuImgRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("qemu-img bench: no 'Run completed' line in %q", firstLine(string(out)))
	}
	secs, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || secs <= 0 {
		return 0, fmt.Errorf("qemu-img bench: bad time %q", m[1])
	}
	return float64(ops) * diskBlock / (1 << 20) / secs, nil
}

// figureDisk is figure 6: the storage layer virtio-blk sits on, through
// its Go API, against the host file itself and against qemu-img bench on
// the same images; then what a guest sees through virtio-blk (the virtio
// payload's benchmark mode) against the host file.
func figureDisk(e *env) []Row {
	dir := filepath.Join(e.tmp, "disk")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failedRows(err, "6. disk")
	}
	raw := filepath.Join(dir, "disk.raw")
	qcow := filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(raw, nil, 0o644); err != nil {
		return failedRows(err, "6. disk")
	}
	if err := os.Truncate(raw, diskImageSize); err != nil {
		return failedRows(err, "6. disk")
	}
	if err := qcow2.Create(qcow, diskImageSize, qcow2.CreateOptions{}); err != nil {
		return failedRows(err, "6. disk")
	}
	for _, img := range []struct{ path, format string }{{raw, "raw"}, {qcow, "qcow2"}} {
		if err := fillImage(img.path, img.format); err != nil {
			return failedRows(fmt.Errorf("fill %s: %w", img.path, err), "6. disk")
		}
	}
	patterns := diskPatterns()
	cond := e.notes.ref(fmt.Sprintf("Storage-layer disk figures measure vsh's storage layer, the code virtio-blk sits on, through its Go API (storage.OpenDisk with cache='none', i.e. O_DIRECT), not a guest (the guest-seen rows follow). %d KiB requests one at a time (queue depth 1), %d MiB image pre-filled so no qcow2 cluster is allocated while timed, on %s; random offsets are the same for every backend and run. The host-file peer is the same raw file opened with O_DIRECT and read/written with pread/pwrite; qemu-img bench runs on the same image files with -t none -d 1 (it has only a sequential mode).", diskBlock/1024, diskImageSize>>20, fsType(dir)))
	type key struct{ format, pattern string }
	hostRes := map[string]Result{}
	vshRes := map[key]Result{}
	qemuRes := map[key]Result{}
	qemuImg, qemuErr := exec.LookPath("qemu-img")

	for run := 0; run < e.runs; run++ {
		for _, p := range patterns {
			f, err := openHostFile(raw)
			if err == nil {
				var v float64
				v, err = runPattern(f, p)
				f.Close()
				hostRes[p.name] = addSample(hostRes[p.name], v, err)
			} else {
				hostRes[p.name] = addSample(hostRes[p.name], 0, err)
			}
			for _, img := range []struct{ path, format string }{{raw, "raw"}, {qcow, "qcow2"}} {
				k := key{img.format, p.name}
				d, err := storage.OpenDisk(img.path, img.format, false, "none")
				if err != nil {
					vshRes[k] = addSample(vshRes[k], 0, err)
					continue
				}
				v, err := runPattern(d, p)
				if cerr := d.Close(); err == nil {
					err = cerr
				}
				vshRes[k] = addSample(vshRes[k], v, err)
				if qemuErr == nil && len(p.offsets) == diskImageSize/diskBlock { // sequential only
					v, err := qemuImgBench(qemuImg, img.path, img.format, p.write)
					qemuRes[k] = addSample(qemuRes[k], v, err)
				}
			}
		}
	}
	guestRes, guestCond := guestDisk(e, dir, raw, qcow)
	var rows []Row
	n := 0
	letter := func() string { n++; return string(rune('a' + n - 1)) }
	for _, format := range []string{"raw", "qcow2"} {
		for _, p := range patterns {
			rows = append(rows, Row{
				Figure:     fmt.Sprintf("6%s. disk %s 4 KiB %s (storage layer)", letter(), format, p.name),
				Unit:       "MiB/s",
				VSH:        vshRes[key{format, p.name}],
				PeerName:   "host raw file, O_DIRECT pread/pwrite",
				Peer:       hostRes[p.name],
				Conditions: cond,
			})
		}
	}
	for _, format := range []string{"raw", "qcow2"} {
		for _, p := range patterns {
			if len(p.offsets) != diskImageSize/diskBlock {
				continue
			}
			peer := qemuRes[key{format, p.name}]
			if qemuErr != nil {
				peer = Result{Missing: installHint("qemu-img", "qemu-utils")}
			}
			w := ""
			if p.write {
				w = " -w"
			}
			rows = append(rows, Row{
				Figure:     fmt.Sprintf("6%s. disk %s 4 KiB %s (storage layer)", letter(), format, p.name),
				Unit:       "MiB/s",
				VSH:        vshRes[key{format, p.name}],
				PeerName:   fmt.Sprintf("qemu-img bench -t none -d 1%s", w),
				Peer:       peer,
				Conditions: cond,
			})
		}
	}
	for _, format := range []string{"raw", "qcow2"} {
		for _, p := range patterns {
			rows = append(rows, Row{
				Figure:     fmt.Sprintf("6%s. disk %s 4 KiB %s (guest, virtio-blk)", letter(), format, p.name),
				Unit:       "MiB/s",
				VSH:        guestRes[[2]string{format, p.name}],
				PeerName:   "host raw file, O_DIRECT pread/pwrite",
				Peer:       hostRes[p.name],
				Conditions: guestCond,
			})
		}
	}
	return rows
}

// guestDiskOps is how many 4 KiB requests the virtio payload issues per
// phase: fewer than the host passes, as each costs the guest an exit.
const guestDiskOps = 2048

// guestDiskPhases maps the payload's phase names to figure 6's patterns.
var guestDiskPhases = map[string]string{
	"seq-read": "sequential read", "rand-read": "random read",
	"seq-write": "sequential write", "rand-write": "random write",
}

// guestDisk runs the virtio payload's benchmark in a vsh domain whose
// virtio-blk disk is each image in turn, e.runs times, and returns MiB/s
// by format and pattern name, and the rows' conditions.
func guestDisk(e *env, dir, raw, qcow string) (map[[2]string]Result, string) {
	res := map[[2]string]Result{}
	cond := e.notes.ref(fmt.Sprintf("Guest-seen disk figures: the virtio payload (guest/virtiopayload, built with gcc) boots in a vsh domain whose only device besides COM1 is the image as a virtio-blk disk with cache='none' (O_DIRECT); from guest ring 3 it drives the virtqueue at queue depth 1, polling the used ring, and times %d requests of 4 KiB per pattern with its TSC (frequency from tsc_early_khz). Sequential passes start at block 0; random offsets come from the payload's xorshift within the first %d MiB. The images are the pre-filled ones above; the peer is the host raw file with O_DIRECT pread/pwrite.", guestDiskOps, guestDiskOps*diskBlock>>20))
	kernel, err := virtiopayload.Build(dir)
	if err != nil {
		for _, format := range []string{"raw", "qcow2"} {
			for _, name := range guestDiskPhases {
				res[[2]string{format, name}] = Result{Missing: "not run: " + err.Error()}
			}
		}
		return res, cond
	}
	for run := 0; run < e.runs; run++ {
		for _, img := range []struct{ path, format string }{{raw, "raw"}, {qcow, "qcow2"}} {
			r, err := guestDiskRun(e, kernel, img.path, img.format)
			for phase, name := range guestDiskPhases {
				k := [2]string{img.format, name}
				if err != nil {
					res[k] = addSample(res[k], 0, err)
					continue
				}
				var v float64
				perr := fmt.Errorf("payload reported no %s phase", phase)
				for _, p := range r.Phases {
					if p.Name == phase {
						v, perr = p.MBPerSec(r.TSCKHz)*1e6/(1<<20), nil
					}
				}
				if perr == nil && v == 0 {
					perr = fmt.Errorf("guest TSC frequency unknown")
				}
				res[k] = addSample(res[k], v, perr)
			}
		}
	}
	return res, cond
}

// guestDiskRun boots the payload's benchmark on one image and parses what
// it printed.
func guestDiskRun(e *env, kernel, path, format string) (virtiopayload.BenchResult, error) {
	cmdline := "console=ttyS0 " + virtiopayload.Cmdline(virtiopayload.ModeBench, guestDiskOps, 1)
	g, err := defineVSHGuest(e, "vb-disk-"+format, kernel, "", cmdline, 64, diskDeviceXML(path, format))
	defer g.remove()
	if err != nil {
		return virtiopayload.BenchResult{}, err
	}
	if _, err := g.boot("VP-END", 5*time.Minute); err != nil {
		return virtiopayload.BenchResult{}, err
	}
	data, err := os.ReadFile(g.consoleLog())
	if err != nil {
		return virtiopayload.BenchResult{}, err
	}
	return virtiopayload.ParseBench(string(data))
}

// diskDeviceXML is one virtio disk on path for defineVSHGuest.
func diskDeviceXML(path, format string) string {
	return fmt.Sprintf(`    <disk type='file' device='disk'>
      <driver name='qemu' type='%s' cache='none'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
`, format, path)
}

// fsType names the file system holding dir.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "an unknown file system"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	}
	return fmt.Sprintf("file system 0x%x", st.Type)
}
