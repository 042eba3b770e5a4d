package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Linux end-to-end test: the guest kit's kernel and initramfs (built
// by guest/build.sh) defined from XML, started with vsh, a command run in
// the guest over vsh console, and the guest shut down. On a host with
// VT-x/AMD-V this takes seconds; on a nested-PVM host, where guest ring 0
// is emulated, the boot alone takes minutes (see the t.Logf lines).
// VSH_TEST_SKIP_LINUX=1 skips it for quick local runs.

const (
	linuxReadyMarker = "VSH-GUEST-READY"
	// linuxBootWait bounds the boot; measured here: 2-4 minutes, much
	// longer while the host is loaded.
	linuxBootWait = 15 * time.Minute
	// linuxCommandWait bounds each command in the booted guest.
	linuxCommandWait = 5 * time.Minute
	linuxCmdline     = "console=ttyS0 reboot=k panic=1 pci=off nomodeset noapic init_on_alloc=0 8250.nr_uarts=1"
)

// guestKitDir is where guest/build.sh puts its outputs (VSH_GUEST_DIR
// overrides).
func guestKitDir() string {
	if d := os.Getenv("VSH_GUEST_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/vsh/guest"
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "vsh", "guest")
}

// guestKernelHasACPI reports whether the built guest kernel has ACPI, and
// so can be shut down cleanly by vsh shutdown (the ACPI power button).
func guestKernelHasACPI(kit string) bool {
	f, err := os.Open(filepath.Join(kit, "kernel.config"))
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.TrimSpace(s.Text()) == "CONFIG_ACPI=y" {
			return true
		}
	}
	return false
}

// expectWithin waits up to d for s in the console session's output.
func (p *ptySession) expectWithin(s string, d time.Duration) {
	p.t.Helper()
	deadline := time.After(d)
	for !strings.Contains(p.out.String(), s) {
		select {
		case c, ok := <-p.chunks:
			if !ok {
				p.t.Fatalf("vsh console exited before %q; output:\n%s", s, p.out.String())
			}
			p.out.Write(c)
		case <-deadline:
			p.t.Fatalf("no %q within %v; output:\n%s", s, d, p.out.String())
		}
	}
}

// shutdownLinuxGuest is THE place the test ends the guest, and returns
// the domstate --reason it must end in. With ACPI in the guest kernel
// (guest/kernel.config CONFIG_ACPI=y) it is a clean `vsh shutdown`;
// without it the guest has no power button to press, so the test
// destroys it.
func shutdownLinuxGuest(t *testing.T, env []string, name, kit string) string {
	t.Helper()
	if guestKernelHasACPI(kit) {
		mustVsh(t, env, "shutdown", name)
		return "shut off (shutdown)"
	}
	t.Logf("guest kernel without CONFIG_ACPI: destroying instead of a clean shutdown")
	mustVsh(t, env, "destroy", name)
	return "shut off (destroyed)"
}

func TestLinuxGuestEndToEnd(t *testing.T) {
	if os.Getenv("VSH_TEST_SKIP_LINUX") == "1" {
		t.Skip("VSH_TEST_SKIP_LINUX=1: skipping the Linux guest boot")
	}
	requireKVM(t)
	kit := guestKitDir()
	kernel := filepath.Join(kit, "vmlinux")
	initrd := filepath.Join(kit, "initramfs.cpio")
	if _, err := os.Stat(initrd); err != nil {
		initrd += ".gz"
	}
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("guest kit not built (run guest/build.sh): %v", err)
		}
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < linuxBootWait+3*linuxCommandWait {
		t.Skipf("the Linux boot needs up to %v here: run go test with -timeout 40m", linuxBootWait+3*linuxCommandWait)
	}
	home := e2eHome(t)
	env := e2eEnv(home)
	xml := filepath.Join(home, "linux.xml")
	err := os.WriteFile(xml, []byte(fmt.Sprintf(`<domain type='kvm'>
  <name>linux</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
`, kernel, initrd, linuxCmdline)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mustVsh(t, env, "define", xml)
	start := time.Now()
	mustVsh(t, env, "start", "linux")
	t.Logf("vsh start returned after %v", time.Since(start).Round(time.Millisecond))
	waitLog(t, home, "linux", linuxReadyMarker, 1, linuxBootWait)
	booted := time.Since(start)
	t.Logf("%s on the console after %v", linuxReadyMarker, booted.Round(time.Second))
	waitDomstate(t, env, "linux", "running (booted)")

	p := startPTY(t, env, "-c", "vsh:///session", "console", "linux")
	p.expect("Connected to domain 'linux'")
	p.expect("Escape character is ^] (Ctrl + ])")
	// The typed text never contains the expected output, so only the
	// guest's shell can produce it.
	cmdStart := time.Now()
	p.send("echo vsh-$((6*7))-ok\r")
	p.expectWithin("vsh-42-ok", linuxCommandWait)
	t.Logf("arithmetic in the guest shell answered after %v", time.Since(cmdStart).Round(time.Millisecond))
	cmdStart = time.Now()
	p.send("echo cpus=$(grep -c ^processor /proc/cpuinfo)\r")
	p.expectWithin("cpus=1", linuxCommandWait)
	t.Logf("grep /proc/cpuinfo in the guest answered after %v", time.Since(cmdStart).Round(time.Millisecond))
	p.send("\x1d")
	if err := p.wait(); err != nil {
		t.Errorf("vsh console after ^]: %v", err)
	}
	waitDomstate(t, env, "linux", "running (booted)")

	stop := time.Now()
	want := shutdownLinuxGuest(t, env, "linux", kit)
	waitDomstateWithin(t, env, "linux", want, linuxCommandWait)
	t.Logf("guest ended (%s) %v after the request; whole test %v", want, time.Since(stop).Round(time.Millisecond), time.Since(start).Round(time.Second))
	mustVsh(t, env, "undefine", "linux")
	requireClean(t, home)
}
