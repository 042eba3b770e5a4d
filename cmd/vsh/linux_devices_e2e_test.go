package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Linux guest's devices end to end: one boot of the guest kit with a
// virtio-blk disk naming a dir-pool volume, a virtio-net interface on the
// system connection's default NAT network, a balloon and an rng. The
// guest writes a file on an ext4 volume, takes a DHCP lease from the
// network's dnsmasq, pings the bridge and streams TCP to the host and back
// (the throughput is logged, not asserted); the
// host then reads the leases, the memory stats and, with the guest shut
// off, the file from the image.
//
// Everything runs in a private network namespace: the test re-executes
// itself under unshare(1), so the bridge, nftables table, dnsmasq and tap
// exist only there and the host's real network is never touched.

// netnsChildEnv marks the re-executed test process inside the namespace.
const netnsChildEnv = "VSH_TEST_NETNS_CHILD"

const (
	netdiskDomain = "netdisk"
	netdiskMAC    = "52:54:00:4e:44:01"
	netdiskBridge = "192.168.122.1"
	// netdiskStream is what the guest sends to the host's TCP sink, in
	// blocks of 64 KiB: 2 MiB, as guest->host TCP measured 0.05 MB/s on
	// the nested-PVM host (10 MiB took 3m34s).
	netdiskStream = 32 * 64 << 10
)

func TestLinuxGuestNetworkAndDisk(t *testing.T) {
	if os.Getenv("VSH_TEST_SKIP_LINUX") == "1" {
		t.Skip("VSH_TEST_SKIP_LINUX=1: skipping the Linux guest boot")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: networks, network namespaces and pools of vsh:///system")
	}
	requireKVM(t)
	kit := guestKitDir()
	kernel := filepath.Join(kit, "vmlinux")
	initrd := filepath.Join(kit, "initramfs.cpio.gz")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("guest kit not built (run guest/build.sh): %v", err)
		}
	}
	for _, tool := range []struct{ name, pkg string }{
		{"unshare", "util-linux"}, {"ip", "iproute2"}, {"nft", "nftables"},
		{"dnsmasq", "dnsmasq-base"}, {"busybox", "busybox-static"},
		{"mkfs.ext4", "e2fsprogs"}, {"debugfs", "e2fsprogs"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			t.Skipf("%s not installed: apt-get install %s", tool.name, tool.pkg)
		}
	}
	if os.Getenv(netnsChildEnv) != "1" {
		runInNetns(t)
		return
	}
	netdiskInNamespace(t, kernel, initrd, kit)
}

// runInNetns re-executes this test under unshare --net --mount and
// reports the child's verdict as its own.
func runInNetns(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("unshare", "--net", "--mount", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces: %v: %s", err, bytes.TrimSpace(out))
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < linuxBootWait+3*linuxCommandWait {
		t.Skipf("the Linux boot needs up to %v here: run go test with -timeout 40m", linuxBootWait+3*linuxCommandWait)
	}
	args := []string{"--net", "--mount", os.Args[0], "-test.run=^TestLinuxGuestNetworkAndDisk$", "-test.v"}
	if dl, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(dl).Round(time.Second).String())
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	var out bytes.Buffer
	// Stream the child's lines as they come: the boot takes minutes.
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	if strings.Contains(out.String(), "--- SKIP: TestLinuxGuestNetworkAndDisk") {
		t.Skip("skipped inside the network namespace (see its output above)")
	}
	if err != nil || !strings.Contains(out.String(), "--- PASS: TestLinuxGuestNetworkAndDisk") {
		t.Fatalf("the test inside the network namespace failed (%v); its output is above", err)
	}
}

// sysVsh runs vsh against vsh:///system.
func sysVsh(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return run(t, env, "", vshBin, append([]string{"-c", "vsh:///system"}, args...)...)
}

// mustSysVsh runs vsh against vsh:///system and fails unless it succeeds.
func mustSysVsh(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := sysVsh(t, env, args...)
	if r.rc != 0 {
		t.Fatalf("vsh -c vsh:///system %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.rc, r.stdout, r.stderr)
	}
	return r.stdout
}

// guestRun types cmd on the console and waits for the guest to print
// "<tag>-ok-42" or "<tag>-fail-42". The markers are computed by the
// guest's shell, so the echo of the typed line never matches them. A
// failed command is an error, not fatal, so that the later checks still
// run; ok reports success.
func guestRun(t *testing.T, p *ptySession, tag, cmd string) (d time.Duration, ok bool) {
	t.Helper()
	okMark, failMark := tag+"-ok-42", tag+"-fail-42"
	start := time.Now()
	p.send(fmt.Sprintf("%s && echo %s-ok-$((6*7)) || echo %s-fail-$((6*7))\r", cmd, tag, tag))
	deadline := time.After(linuxCommandWait)
	for {
		s := p.out.String()
		if strings.Contains(s, okMark) {
			return time.Since(start), true
		}
		if strings.Contains(s, failMark) {
			t.Errorf("guest command %q failed; console:\n%s", cmd, s)
			return time.Since(start), false
		}
		select {
		case c, more := <-p.chunks:
			if !more {
				t.Fatalf("vsh console exited during %q; output:\n%s", cmd, s)
			}
			p.out.Write(c)
		case <-deadline:
			t.Fatalf("guest command %q: no answer within %v; console:\n%s", cmd, linuxCommandWait, s)
		}
	}
}

// tcpSink accepts one connection on addr, reads want bytes and closes it
// (so the guest's nc ends without needing -q), reporting the bytes read
// and the time from the first byte to the last.
func tcpSink(t *testing.T, addr string, want int) (port int, done <-chan sinkResult) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP sink on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan sinkResult, 1)
	go func() {
		c, err := l.Accept()
		l.Close()
		if err != nil {
			ch <- sinkResult{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		var r sinkResult
		var first time.Time
		for r.n < want {
			n, err := c.Read(buf)
			if n > 0 && first.IsZero() {
				first = time.Now()
			}
			r.n += n
			if err != nil {
				r.err = err
				break
			}
		}
		r.d = time.Since(first)
		ch <- r
	}()
	return l.Addr().(*net.TCPAddr).Port, ch
}

// tcpSource connects to addr (retrying while nothing listens there yet),
// sends want bytes, closes its sending side and waits for the peer to
// close, reporting the bytes sent and the time from connect to the peer's
// close, which follows its last read.
func tcpSource(t *testing.T, addr string, want int) <-chan sinkResult {
	t.Helper()
	ch := make(chan sinkResult, 1)
	go func() {
		deadline := time.Now().Add(linuxCommandWait)
		var c net.Conn
		var err error
		for {
			c, err = net.DialTimeout("tcp", addr, 5*time.Second)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			ch <- sinkResult{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		start := time.Now()
		var r sinkResult
		r.n, r.err = c.Write(make([]byte, want))
		if r.err == nil {
			r.err = c.(*net.TCPConn).CloseWrite()
		}
		if r.err == nil {
			_, r.err = io.Copy(io.Discard, c)
		}
		r.d = time.Since(start)
		ch <- r
	}()
	return ch
}

// guestIPv4 returns the guest's address as domifaddr reports it.
func guestIPv4(t *testing.T, env []string) string {
	t.Helper()
	out := mustSysVsh(t, env, "domifaddr", netdiskDomain)
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "ipv4" {
			ip, _, err := net.ParseCIDR(f[i+1])
			if err == nil {
				return ip.String()
			}
		}
	}
	t.Fatalf("domifaddr %s shows no IPv4 address:\n%s", netdiskDomain, out)
	return ""
}

type sinkResult struct {
	n   int
	d   time.Duration
	err error
}

// netnsProcesses lists the processes other than this one in this
// process's network namespace.
func netnsProcesses() []string {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var procs []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/net")); err != nil || ns != self {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		procs = append(procs, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")))
	}
	return procs
}

// netdiskInNamespace is the test proper, in the private namespace.
func netdiskInNamespace(t *testing.T, kernel, initrd, kit string) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	home := e2eHome(t)
	env := e2eEnv(home)
	// Whatever the test ends with, nothing may outlive it in the
	// namespace: the VMM, dnsmasq (net-destroy) and the pool.
	t.Cleanup(func() {
		sysVsh(t, env, "destroy", netdiskDomain)
		sysVsh(t, env, "net-destroy", "default")
		sysVsh(t, env, "pool-destroy", "netdisk")
		deadline := time.Now().Add(e2eWait)
		for len(netnsProcesses()) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if left := netnsProcesses(); len(left) > 0 {
			t.Errorf("processes left in the test's network namespace: %q", left)
			for _, p := range left {
				if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	phase := time.Now()

	// The default network: defined (and autostarted) on first use of the
	// system connection; started here if it is not.
	nets := mustSysVsh(t, env, "net-list", "--all")
	if !strings.Contains(nets, "default") {
		t.Fatalf("no default network on first use of vsh:///system; net-list --all:\n%s", nets)
	}
	if !netActive(nets, "default") {
		mustSysVsh(t, env, "net-start", "default")
	}
	t.Logf("default network up after %v:\n%s", time.Since(phase).Round(time.Millisecond), mustSysVsh(t, env, "net-list", "--all"))

	// The disk: a raw volume in a dir pool, formatted on the host.
	phase = time.Now()
	poolDir := filepath.Join(home, "pool")
	mustSysVsh(t, env, "pool-define-as", "netdisk", "dir", "--target", poolDir)
	mustSysVsh(t, env, "pool-build", "netdisk")
	mustSysVsh(t, env, "pool-start", "netdisk")
	mustSysVsh(t, env, "vol-create-as", "netdisk", "disk.img", "64M", "--format", "raw")
	image := strings.TrimSpace(mustSysVsh(t, env, "vol-path", "--pool", "netdisk", "disk.img"))
	if image != filepath.Join(poolDir, "disk.img") {
		t.Errorf("vol-path = %q, want %q", image, filepath.Join(poolDir, "disk.img"))
	}
	if out, err := exec.Command("mkfs.ext4", "-F", "-q", image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", image, err, out)
	}
	t.Logf("pool, 64 MiB volume and ext4 ready after %v", time.Since(phase).Round(time.Millisecond))

	xml := filepath.Join(home, netdiskDomain+".xml")
	err := os.WriteFile(xml, []byte(fmt.Sprintf(`<domain type='kvm'>
  <name>%s</name>
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
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='netdisk' volume='disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='%s'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='virtio'>
      <stats period='2'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
`, netdiskDomain, kernel, initrd, linuxCmdline, netdiskMAC)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mustSysVsh(t, env, "define", xml)
	start := time.Now()
	mustSysVsh(t, env, "start", netdiskDomain)
	t.Logf("vsh start returned after %v", time.Since(start).Round(time.Millisecond))
	if pids := vmmPIDs(home); len(pids) == 1 {
		self, _ := os.Readlink("/proc/self/ns/net")
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pids[0])); ns != self {
			t.Fatalf("the VMM (pid %d) runs in network namespace %s, not the test's %s", pids[0], ns, self)
		}
	}
	waitLog(t, home, netdiskDomain, linuxReadyMarker, 1, linuxBootWait)
	t.Logf("%s on the console after %v", linuxReadyMarker, time.Since(start).Round(time.Second))

	p := startPTY(t, env, "-c", "vsh:///system", "console", netdiskDomain)
	p.expect("Connected to domain '" + netdiskDomain + "'")
	d, diskOK := guestRun(t, p, "disk", "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo vsh-disk-$((6*7)) > /mnt/hello && sync && umount /mnt")
	if diskOK {
		t.Logf("guest mounted the ext4 volume, wrote and unmounted in %v", d.Round(time.Millisecond))
	}
	// udhcpc neither brings eth0 up nor, in Debian's busybox (which looks
	// for /etc/udhcpc/default.script), finds the guest kit's script
	// without -s.
	d, netOK := guestRun(t, p, "dhcp", "ip link set eth0 up && udhcpc -s /usr/share/udhcpc/default.script -i eth0 -q -n -t 10 -T 3")
	if netOK {
		t.Logf("guest DHCP lease in %v", d.Round(time.Millisecond))
		d, netOK = guestRun(t, p, "ping", "ping -c 3 "+netdiskBridge)
	}
	if netOK {
		t.Logf("guest pinged the bridge (3 packets) in %v", d.Round(time.Millisecond))
		// TCP throughput guest -> host: the sink listens on the bridge
		// address, in this namespace.
		port, sunk := tcpSink(t, net.JoinHostPort(netdiskBridge, "0"), netdiskStream)
		d, netOK = guestRun(t, p, "tcp", fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc %s %d", netdiskStream/(64<<10), netdiskBridge, port))
		select {
		case r := <-sunk:
			if r.err != nil || r.n < netdiskStream {
				t.Errorf("TCP sink got %d of %d bytes: %v", r.n, netdiskStream, r.err)
			} else {
				t.Logf("TCP guest->host: %d bytes in %v = %.2f MB/s (guest command %v)", r.n, r.d.Round(time.Millisecond), float64(r.n)/1e6/r.d.Seconds(), d.Round(time.Millisecond))
			}
		case <-time.After(e2eWait):
			t.Errorf("TCP sink: no result %v after the guest's nc ended", e2eWait)
		}
	}
	if netOK {
		// TCP throughput host -> guest: the guest's nc listens (its stdin
		// a FIFO held open, so it does not half-close at once) until the
		// host closes; the host finds the guest's address with domifaddr.
		ip := guestIPv4(t, env)
		sent := tcpSource(t, net.JoinHostPort(ip, "5002"), netdiskStream)
		d, netOK = guestRun(t, p, "tcp-in", "mkfifo /tmp/hold && nc -l -p 5002 0<>/tmp/hold >/dev/null")
		select {
		case r := <-sent:
			if r.err != nil || r.n < netdiskStream {
				t.Errorf("TCP source sent %d of %d bytes to %s: %v", r.n, netdiskStream, ip, r.err)
			} else {
				t.Logf("TCP host->guest: %d bytes in %v = %.2f MB/s (guest command %v)", r.n, r.d.Round(time.Millisecond), float64(r.n)/1e6/r.d.Seconds(), d.Round(time.Millisecond))
			}
		case <-time.After(e2eWait):
			t.Errorf("TCP source: no result %v after the guest's nc ended", e2eWait)
		}
	}
	if !diskOK || !netOK {
		logGuestDevices(t, home)
	}
	p.send("\x1d")
	if err := p.wait(); err != nil {
		t.Errorf("vsh console after ^]: %v", err)
	}

	// Host side: the lease, the guest's address and the balloon's stats.
	leases := mustSysVsh(t, env, "net-dhcp-leases", "default")
	if !strings.Contains(leases, netdiskMAC) || !strings.Contains(leases, "192.168.122.") {
		t.Errorf("net-dhcp-leases default lacks %s with a 192.168.122.x address:\n%s", netdiskMAC, leases)
	}
	t.Logf("net-dhcp-leases default:\n%s", leases)
	addrs := mustSysVsh(t, env, "domifaddr", netdiskDomain)
	if !strings.Contains(addrs, netdiskMAC) || !strings.Contains(addrs, "192.168.122.") {
		t.Errorf("domifaddr %s lacks %s with a 192.168.122.x address:\n%s", netdiskDomain, netdiskMAC, addrs)
	}
	mem := mustSysVsh(t, env, "dommemstat", netdiskDomain)
	if !strings.Contains(mem, "actual") {
		t.Errorf("dommemstat %s has no actual:\n%s", netdiskDomain, mem)
	}
	t.Logf("dommemstat:\n%s", mem)

	// End the guest, then read the file from the image on the host.
	stop := time.Now()
	want := "shut off (destroyed)"
	if guestKernelHasACPI(kit) {
		mustSysVsh(t, env, "shutdown", netdiskDomain)
		want = "shut off (shutdown)"
	} else {
		t.Logf("guest kernel without CONFIG_ACPI: destroying instead of a clean shutdown")
		mustSysVsh(t, env, "destroy", netdiskDomain)
	}
	waitSysDomstate(t, env, netdiskDomain, want, linuxCommandWait)
	t.Logf("guest ended (%s) %v after the request", want, time.Since(stop).Round(time.Millisecond))
	if diskOK {
		out, err := exec.Command("debugfs", "-R", "cat /hello", image).Output()
		if err != nil {
			t.Fatalf("debugfs -R 'cat /hello' %s: %v", image, err)
		}
		if string(out) != "vsh-disk-42\n" {
			t.Errorf("/hello in the image = %q, want %q", out, "vsh-disk-42\n")
		}
	}

	mustSysVsh(t, env, "undefine", netdiskDomain)
	mustSysVsh(t, env, "net-destroy", "default")
	mustSysVsh(t, env, "pool-destroy", "netdisk")
	requireClean(t, home)
	t.Logf("whole test %v", time.Since(start).Round(time.Second))
}

// logGuestDevices logs the guest kernel's boot lines about its virtio
// devices and their command line, to tell a missing device from a broken
// one.
func logGuestDevices(t *testing.T, home string) {
	t.Helper()
	b, _ := os.ReadFile(consoleLog(home, netdiskDomain))
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"virtio", "Command line", "vda", "eth0", "mmio"} {
			if strings.Contains(l, k) {
				lines = append(lines, l)
				break
			}
		}
	}
	t.Logf("guest kernel lines about its devices:\n%s", strings.Join(lines, "\n"))
}

// netActive reports whether net-list shows network name as active.
func netActive(netList, name string) bool {
	for _, line := range strings.Split(netList, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			return f[1] == "active"
		}
	}
	return false
}

// waitSysDomstate polls domstate --reason on vsh:///system until it
// prints want.
func waitSysDomstate(t *testing.T, env []string, name, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var got string
	for time.Now().Before(deadline) {
		got = strings.TrimSpace(sysVsh(t, env, "domstate", "--reason", name).stdout)
		if got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("domstate --reason %s = %q, want %q", name, got, want)
}
