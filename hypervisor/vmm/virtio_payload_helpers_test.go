package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vsh/guest/virtiopayload"
	"vsh/hypervisor"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/storage/qcow2"
)

// Helpers for the virtio payload guests (virtio_kvm_test.go): building
// the payload, making disk images, and running a guest to its poweroff.

// virtioPayload builds the virtio payload into the test's temporary
// directory, skipping the test where gcc is missing.
func virtioPayload(t testing.TB) string {
	t.Helper()
	path, err := virtiopayload.Build(t.TempDir())
	if errors.Is(err, virtiopayload.ErrNoCompiler) {
		t.Skipf("cannot build the virtio payload: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// hostFill is what the host writes to sectors 64..71 of every test disk
// before the guest starts, so the guest's read can be checked.
func hostFill() []byte {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i*7+3) ^ byte(i>>9)
	}
	return b
}

const hostFillOffset = 64 * 512

// makeRaw creates a raw image of size bytes with hostFill at sector 64.
func makeRaw(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(hostFill(), hostFillOffset); err != nil {
		t.Fatal(err)
	}
}

// makeQcow2 creates a qcow2 image of size bytes with hostFill at sector 64.
func makeQcow2(t testing.TB, path string, size uint64) {
	t.Helper()
	if err := qcow2.Create(path, size, qcow2.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	img, err := qcow2.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(hostFill(), hostFillOffset); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
}

// runVirtioPayload boots the payload with cfg's devices and returns the
// console log once the guest has powered off. A guest that ends any other
// way fails the test with the log.
func runVirtioPayload(t testing.TB, name, kernel, cmdline string, disks []hypervisor.Disk, rngs int) string {
	t.Helper()
	cfg := virtioPayloadConfig(name, kernel, cmdline)
	cfg.Disks = disks
	cfg.RNGs = make([]hypervisor.RNG, rngs)
	p, pid := launchTB(t, cfg)
	return awaitPayloadEnd(t, p, pid)
}

// virtioPayloadConfig is a one-vCPU, 64 MiB machine booting the virtio payload with
// cmdline and no devices yet.
func virtioPayloadConfig(name, kernel, cmdline string) *hypervisor.Config {
	return &hypervisor.Config{
		Name: name, UUID: "00000000-0000-4000-8000-" + fmt.Sprintf("%012x", len(name)+0x100),
		MemoryBytes: 64 << 20, VCPUs: 1,
		Boot: hypervisor.Boot{Kernel: kernel, Cmdline: cmdline + " console=ttyS0"},
	}
}

// awaitPayloadEnd waits for the payload's VMM to exit and returns the
// console log; a guest that did not power off after "VP-END pass" fails
// the test with the log.
func awaitPayloadEnd(t testing.TB, p Paths, pid int) string {
	t.Helper()
	var r Record
	waitFor(t, p.Name+" to power off", func() bool {
		var err error
		r, err = ReadRecord(p.StateFile())
		return err == nil && r.Exited
	})
	requireGone(t, p, pid)
	log, err := os.ReadFile(p.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	if r.State != driver.StateShutoff || r.Reason != driver.ShutoffShutdown {
		t.Fatalf("guest ended %v/%v (%s), not by powering off; console:\n%s", r.State, r.Reason, r.Detail, log)
	}
	s := string(log)
	if strings.Contains(s, virtiopayload.FailPrefix) || !strings.Contains(s, virtiopayload.EndPass) {
		t.Fatalf("payload reported a failure; console:\n%s", s)
	}
	return s
}

// requireLine fails unless the console has a line starting with prefix,
// and returns that line.
func requireLine(t testing.TB, console, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(console, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("console lacks a line starting %q:\n%s", prefix, console)
	return ""
}

// expectedSectors returns the 4 KiB the payload writes at sector s.
func expectedSectors(s uint64) []byte {
	b := make([]byte, 4096)
	for k := uint64(0); k < 8; k++ {
		for i := uint32(0); i < 512; i++ {
			b[k*512+uint64(i)] = virtiopayload.Pattern(s+k, i)
		}
	}
	return b
}

// launchTB is launch for tests and benchmarks alike.
func launchTB(t testing.TB, cfg *hypervisor.Config) (Paths, int) {
	t.Helper()
	p := Paths{RunDir: t.TempDir(), Name: cfg.Name}
	pid, err := Launch("", p, 7, cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return p, pid
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
