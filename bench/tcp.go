package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"vsh/hypervisor/network/netns"
)

// Figure 7: TCP throughput between the guest kit's Linux and the host, in
// both directions, through virtio-net on a tap on a bridge. Everything runs
// in a private network namespace (package netns): the bridge, the taps,
// the VMMs forked into it and the host's sockets.
//
// The guest needs no console session: its rcS reads vsh.ip= and vsh.tcp=
// from the command line, streams tcpBlocks x 64 KiB of zeros to the host
// with busybox nc, then listens and takes as much from the host, then
// powers off. The host times the first stream from accept to EOF and the
// second from connect to the guest's close (which follows its last read).

const (
	tcpBridge    = "vbr0"
	tcpHostIP    = "10.11.0.1"
	tcpGuestIP   = "10.11.0.2"
	tcpPrefix    = "/24"
	tcpPort      = 5001 // guest -> host; the guest listens on tcpPort+1
	tcpGuestMAC  = "52:54:00:7c:50:01"
	tcpQEMUTap   = "qtap0"
	tcpBlockSize = 64 << 10
	// tcpBlocks is 1 MiB per direction: on nested PVM the guest's TCP
	// stack runs in emulated ring 0 at about 0.05 MB/s, so this alone is
	// about 40 s per run.
	tcpBlocks = 16
	tcpBytes  = tcpBlocks * tcpBlockSize
	// tcpBoot bounds the boot plus both streams.
	tcpBoot = 10 * time.Minute
)

// tcpQEMUCmdline is what the peer's guest gets instead of linuxCmdline:
// under QEMU's microvm (TCG) "noapic" leaves virtio-mmio without an
// interrupt and the guest hangs after TSC calibration with vsh's full
// line, so QEMU gets the shortest line that boots there.
const tcpQEMUCmdline = "console=ttyS0 reboot=k panic=1 8250.nr_uarts=1"

func tcpGuestArgs() string {
	return fmt.Sprintf("vsh.ip=%s%s vsh.tcp=%s:%d:%d", tcpGuestIP, tcpPrefix, tcpHostIP, tcpPort, tcpBlocks)
}

// tcpResult is one run: MB/s each way.
type tcpResult struct{ up, down float64 }

func figureTCP(e *env) []Row {
	kernel := filepath.Join(guestKitDir, "vmlinux")
	bzImage := filepath.Join(guestKitDir, "bzImage")
	initrd := filepath.Join(guestKitDir, "initramfs.cpio.gz")
	const peer = "qemu-system-x86_64 -accel tcg -M microvm, virtio-net-device on a tap on the same bridge"
	cond := fmt.Sprintf("guest kit Linux (%s, %s), 1 vCPU, %d MiB, busybox nc, %d KiB each way, virtio-net on a tap on bridge %s in a private network namespace",
		filepath.Base(kernel), filepath.Base(initrd), linuxMemMiB, tcpBytes>>10, tcpBridge)
	up := Row{Figure: "7. TCP guest→host", Unit: "MB/s", PeerName: peer, Conditions: cond}
	down := Row{Figure: "7. TCP host→guest", Unit: "MB/s", PeerName: peer, Conditions: cond}
	rows := []*Row{&up, &down}
	if msg := kvmMissing(); msg != "" {
		return missingRows(rows, msg)
	}
	if os.Geteuid() != 0 {
		return missingRows(rows, "needs root: taps and a bridge in a private network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return missingRows(rows, installHint("ip", "iproute2"))
	}
	for _, f := range []string{kernel, bzImage, initrd} {
		if _, err := os.Stat(f); err != nil {
			return missingRows(rows, f+" missing: run guest/build.sh")
		}
	}
	ns, err := netns.New()
	if err != nil {
		return missingRows(rows, err.Error())
	}
	defer ns.Close()
	if err := ns.Do(func() error {
		return ipCommands([][]string{
			{"link", "set", "lo", "up"},
			{"link", "add", tcpBridge, "type", "bridge"},
			{"addr", "add", tcpHostIP + tcpPrefix, "dev", tcpBridge},
			{"link", "set", tcpBridge, "up"},
			{"tuntap", "add", tcpQEMUTap, "mode", "tap"},
			{"link", "set", tcpQEMUTap, "master", tcpBridge},
			{"link", "set", tcpQEMUTap, "up"},
		})
	}); err != nil {
		return missingRows(rows, "network namespace setup: "+err.Error())
	}
	g, err := defineVSHGuest(e, "bench-tcp", kernel, initrd, linuxCmdline+" "+tcpGuestArgs(), linuxMemMiB, tcpNICXML)
	defer g.remove()
	if err != nil {
		return missingRows(rows, err.Error())
	}
	qemu, qemuErr := exec.LookPath("qemu-system-x86_64")
	peerFailed := false
	for i := 0; i < e.runs; i++ {
		e.log("tcp run %d/%d (vsh)", i+1, e.runs)
		r, err := tcpRun(ns, vshTCPGuest{g})
		up.VSH = addSample(up.VSH, r.up, err)
		down.VSH = addSample(down.VSH, r.down, err)
		if qemuErr != nil || peerFailed {
			continue
		}
		e.log("tcp run %d/%d (QEMU TCG)", i+1, e.runs)
		q := &qemuTCPGuest{qemu: qemu, args: qemuTCPArgs(bzImage, initrd)}
		r, err = tcpRun(ns, q)
		up.Peer = addSample(up.Peer, r.up, err)
		down.Peer = addSample(down.Peer, r.down, err)
		peerFailed = err != nil
	}
	if qemuErr != nil {
		up.Peer = Result{Missing: installHint("qemu-system-x86_64", "qemu-system-x86")}
		down.Peer = up.Peer
	}
	note := e.notes.ref("QEMU runs this figure with TCG, not KVM: on this nested-PVM host QEMU with KVM cannot boot Linux at all (it has none of the fix-ups Linux needs there; see figure 3), while vsh's guest runs on /dev/kvm with its kernel in ring 0, which PVM emulates about 1000x slower than native. TCG translates guest kernel code instead, so here the peer's guest TCP stack is far faster: the row measures this host's nested layer, not virtio-net. The peer's command line is " + tcpQEMUCmdline + " plus the same vsh.* arguments (vsh's full line leaves microvm's virtio-mmio without interrupts under noapic).")
	up.Conditions += " " + note
	down.Conditions += " " + note
	return []Row{up, down}
}

// ipCommands runs ip(8) with each argument list in turn.
func ipCommands(cmds [][]string) error {
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// tcpGuest is a VM that runs the guest kit's unattended TCP exchange.
type tcpGuest interface {
	// start boots the guest; it is called on the namespace's thread.
	start() error
	// wait waits for the guest to power off after the exchange.
	wait(timeout time.Duration) error
	// stop kills the guest if it still runs.
	stop()
}

// tcpRun boots g and measures both streams.
func tcpRun(ns *netns.Thread, g tcpGuest) (tcpResult, error) {
	var l net.Listener
	err := ns.Do(func() (err error) {
		if l, err = net.Listen("tcp", net.JoinHostPort(tcpHostIP, fmt.Sprint(tcpPort))); err != nil {
			return err
		}
		if err = g.start(); err != nil {
			l.Close()
		}
		return err
	})
	if err != nil {
		return tcpResult{}, err
	}
	defer g.stop()
	deadline := time.Now().Add(tcpBoot)
	// A bounded wait for the guest's connection.
	var closeOnce sync.Once
	timer := time.AfterFunc(tcpBoot, func() { closeOnce.Do(func() { l.Close() }) })
	c, err := l.Accept()
	timer.Stop()
	closeOnce.Do(func() { l.Close() })
	if err != nil {
		return tcpResult{}, fmt.Errorf("no connection from the guest within %v: %w", tcpBoot, err)
	}
	c.SetDeadline(deadline)
	t0 := time.Now()
	n, err := io.Copy(io.Discard, c)
	upTime := time.Since(t0)
	c.Close()
	if err != nil || n != tcpBytes {
		return tcpResult{}, fmt.Errorf("guest->host stream: %d of %d bytes: %v", n, tcpBytes, err)
	}

	// The guest listens once its sender has ended: retry until it does.
	var conn net.Conn
	for {
		err = ns.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", net.JoinHostPort(tcpGuestIP, fmt.Sprint(tcpPort+1)), 5*time.Second)
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return tcpResult{}, fmt.Errorf("host->guest stream: cannot connect: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	conn.SetDeadline(deadline)
	t0 = time.Now()
	w, err := conn.Write(make([]byte, tcpBytes))
	if err == nil {
		err = conn.(*net.TCPConn).CloseWrite()
	}
	if err == nil {
		// The guest closes its end after reading our EOF.
		_, err = io.Copy(io.Discard, conn)
	}
	downTime := time.Since(t0)
	conn.Close()
	if err != nil || w != tcpBytes {
		return tcpResult{}, fmt.Errorf("host->guest stream: %d of %d bytes: %v", w, tcpBytes, err)
	}
	if err := g.wait(time.Until(deadline)); err != nil {
		return tcpResult{}, err
	}
	return tcpResult{up: float64(tcpBytes) / 1e6 / upTime.Seconds(), down: float64(tcpBytes) / 1e6 / downTime.Seconds()}, nil
}

// vshTCPGuest runs the exchange in a vsh domain.
type vshTCPGuest struct{ g vshGuest }

func (v vshTCPGuest) start() error { return v.g.run("start", v.g.name) }

func (v vshTCPGuest) wait(timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		out, err := v.g.command("domstate", v.g.name).Output()
		if err == nil && strings.TrimSpace(string(out)) == "shut off" {
			if data, _ := os.ReadFile(v.g.consoleLog()); !bytes.Contains(data, []byte("VSH-TCP-RECEIVED")) {
				return errors.New("the guest powered off without VSH-TCP-RECEIVED on its console")
			}
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the guest did not power off within %v", timeout)
}

func (v vshTCPGuest) stop() { v.g.run("destroy", v.g.name) }

// qemuTCPGuest runs the exchange in QEMU.
type qemuTCPGuest struct {
	qemu    string
	args    []string
	cmd     *exec.Cmd
	console bytes.Buffer
	done    chan error
}

func qemuTCPArgs(bzImage, initrd string) []string {
	return []string{"-accel", "tcg", "-M", "microvm", "-smp", "1", "-m", fmt.Sprint(linuxMemMiB),
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
		"-kernel", bzImage, "-initrd", initrd, "-append", tcpQEMUCmdline + " " + tcpGuestArgs(),
		"-netdev", "tap,id=n0,ifname=" + tcpQEMUTap + ",script=no,downscript=no",
		"-device", "virtio-net-device,netdev=n0,mac=" + tcpGuestMAC}
}

func (q *qemuTCPGuest) start() error {
	q.cmd = exec.Command(q.qemu, q.args...)
	q.cmd.Stdout, q.cmd.Stderr = &q.console, &q.console
	if err := q.cmd.Start(); err != nil {
		return err
	}
	onInterrupt(func() { q.cmd.Process.Kill() })
	q.done = make(chan error, 1)
	go func() { q.done <- q.cmd.Wait() }()
	return nil
}

func (q *qemuTCPGuest) wait(timeout time.Duration) error {
	select {
	case err := <-q.done:
		q.done <- err // for stop
		if err != nil {
			return fmt.Errorf("QEMU: %v: %s", err, qemuError(q.console.String(), nil))
		}
		if !strings.Contains(q.console.String(), "VSH-TCP-RECEIVED") {
			return errors.New("QEMU's guest powered off without VSH-TCP-RECEIVED on its console")
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("QEMU's guest did not power off within %v", timeout)
	}
}

func (q *qemuTCPGuest) stop() {
	if q.cmd != nil && q.cmd.Process != nil {
		q.cmd.Process.Kill()
		<-q.done
	}
}

// tcpNICXML is the guest's NIC on tcpBridge for defineVSHGuest.
const tcpNICXML = `    <interface type='bridge'>
      <mac address='` + tcpGuestMAC + `'/>
      <source bridge='` + tcpBridge + `'/>
      <model type='virtio'/>
    </interface>
`
