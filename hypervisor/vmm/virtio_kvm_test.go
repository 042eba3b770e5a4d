package vmm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"vsh/guest/virtiopayload"
	"vsh/hypervisor"
	"vsh/hypervisor/storage/qcow2"
)

// diskSize is the size of every test disk: 2 MiB, 4096 sectors.
const diskSize = 2 << 20

// TestKVMVirtioPayload boots the virtio payload on /dev/kvm with a raw
// disk, a qcow2 disk, a read-only raw disk and an RNG. The guest drives
// each device from ring 3 (capacity, GET_ID, reads, writes read back,
// flush, a refused write on the read-only disk, two entropy reads); the
// host then checks byte for byte that the guest's writes are in the
// images and that the read-only image is untouched.
func TestKVMVirtioPayload(t *testing.T) {
	requireKVM(t)
	kernel := virtioPayload(t)
	raw, qc, ro := tempPath(t, "disk.raw"), tempPath(t, "disk.qcow2"), tempPath(t, "ro.raw")
	makeRaw(t, raw, diskSize)
	makeQcow2(t, qc, diskSize)
	makeRaw(t, ro, diskSize)
	// A copy-on-write clone: a qcow2 overlay on a raw base with the fill.
	base, overlay := tempPath(t, "base.raw"), tempPath(t, "overlay.qcow2")
	makeRaw(t, base, diskSize)
	if err := qcow2.Create(overlay, diskSize, qcow2.CreateOptions{BackingFile: base, BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	roBefore, err := os.ReadFile(ro)
	if err != nil {
		t.Fatal(err)
	}
	baseBefore, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	disks := []hypervisor.Disk{
		{Path: raw, Format: hypervisor.FormatRaw, Serial: "vsh-raw-serial", Target: "vda"},
		{Path: qc, Format: hypervisor.FormatQcow2, Serial: "qcow2-serial-0123456789", Target: "vdb"},
		{Path: ro, Format: hypervisor.FormatRaw, ReadOnly: true, Target: "vdc"},
		{Path: overlay, Format: hypervisor.FormatQcow2, Serial: "overlay", Target: "vdd"},
	}
	console := runVirtioPayload(t, "virtio-payload", kernel, virtiopayload.Cmdline(virtiopayload.ModeTest, 0, 0), disks, 1)
	t.Logf("console:\n%s", console)

	const sectors = diskSize / 512
	readFNV := fmt.Sprintf("read-fnv=%08x", virtiopayload.FNV1a(hostFill()))
	for _, want := range []string{
		fmt.Sprintf("VP-OK blk0 rw capacity=%d serial=vsh-raw-serial %s wrote=0,%d flushed", sectors, readFNV, sectors-8),
		// GET_ID answers the first 20 bytes of a longer serial.
		fmt.Sprintf("VP-OK blk1 rw capacity=%d serial=qcow2-serial-0123456 %s wrote=0,%d flushed", sectors, readFNV, sectors-8),
		fmt.Sprintf("VP-OK blk2 ro capacity=%d serial=- %s write-status=1", sectors, readFNV),
		// The overlay reads the base's fill through to the backing file.
		fmt.Sprintf("VP-OK blk3 rw capacity=%d serial=overlay %s wrote=0,%d flushed", sectors, readFNV, sectors-8),
	} {
		if !strings.Contains(console, want+"\r\n") {
			t.Errorf("console lacks %q", want)
		}
	}
	requireLine(t, console, "VP-OK rng0 bytes=128 first=")

	// The raw image: the guest's two writes, the host's fill, zeros elsewhere.
	got, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, "raw", got)

	got = readQcow2(t, qc)
	checkImage(t, "qcow2", got)
	checkImage(t, "overlay", readQcow2(t, overlay))
	for _, path := range []string{qc, overlay} {
		img, err := qcow2.Open(path, true)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := img.Check()
		img.Close()
		if err != nil || !rep.OK() {
			t.Errorf("check %s after the guest's writes: %+v, %v", path, rep, err)
		}
	}
	if b, err := os.ReadFile(base); err != nil || !bytes.Equal(b, baseBefore) {
		t.Errorf("the overlay's backing file changed (%v)", err)
	}
	if qemuImg, err := exec.LookPath("qemu-img"); err == nil {
		// QEMU reads the image vsh's engine wrote to the same bytes.
		for _, path := range []string{qc, overlay} {
			if out, err := exec.Command(qemuImg, "check", path).CombinedOutput(); err != nil {
				t.Errorf("qemu-img check %s: %v\n%s", path, err, out)
			}
		}
		conv := tempPath(t, "converted.raw")
		if out, err := exec.Command(qemuImg, "convert", "-O", "raw", qc, conv).CombinedOutput(); err != nil {
			t.Errorf("qemu-img convert: %v\n%s", err, out)
		} else if b, err := os.ReadFile(conv); err != nil || !bytes.Equal(b, got) {
			t.Errorf("qemu-img convert gives different bytes (%v)", err)
		}
	} else {
		t.Log("qemu-img not installed (apt-get install qemu-utils): interop check skipped")
	}

	roAfter, err := os.ReadFile(ro)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(roBefore, roAfter) {
		t.Error("the read-only image changed")
	}
}

// readQcow2 returns the guest-visible contents of a qcow2 image.
func readQcow2(t *testing.T, path string) []byte {
	t.Helper()
	img, err := qcow2.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return got
}

// checkImage compares a whole image with what the guest and host wrote.
func checkImage(t *testing.T, what string, got []byte) {
	t.Helper()
	want := make([]byte, diskSize)
	copy(want[hostFillOffset:], hostFill())
	copy(want[0:], expectedSectors(0))
	copy(want[diskSize-4096:], expectedSectors(diskSize/512-8))
	if len(got) != len(want) {
		t.Fatalf("%s image is %d bytes, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s image differs first at byte %d (sector %d): %#x, want %#x", what, i, i/512, got[i], want[i])
			return
		}
	}
}

// TestKVMVirtioPayloadHostile lets the payload play a malicious guest on a
// raw disk: a buffer outside guest RAM, a looping descriptor chain and a
// runaway available index. The VMM must refuse each (an error status or
// DEVICE_NEEDS_RESET), keep running, work again after a device reset, and
// leave the image alone.
func TestKVMVirtioPayloadHostile(t *testing.T) {
	requireKVM(t)
	kernel := virtioPayload(t)
	raw := tempPath(t, "disk.raw")
	makeRaw(t, raw, diskSize)
	before, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	console := runVirtioPayload(t, "virtio-hostile", kernel, virtiopayload.Cmdline(virtiopayload.ModeHostile, 0, 0),
		[]hypervisor.Disk{{Path: raw, Format: hypervisor.FormatRaw}}, 0)
	line := requireLine(t, console, "VP-HOSTILE ")
	t.Logf("%s", line)
	for _, c := range []string{"bad-addr=", "desc-loop=", "idx-jump="} {
		if !strings.Contains(line, c) {
			t.Errorf("no %s outcome in %q", c, line)
		}
	}
	want := fmt.Sprintf("VP-OK hostile recovered read-fnv=%08x", virtiopayload.FNV1a(hostFill()))
	if !strings.Contains(console, want) {
		t.Errorf("console lacks %q:\n%s", want, console)
	}
	if after, err := os.ReadFile(raw); err != nil || !bytes.Equal(before, after) {
		t.Errorf("the image changed (%v)", err)
	}
}
