package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vsh/guest/payload"
)

const (
	guestKitDir    = "/var/cache/vsh/guest"
	guestKitMarker = "VSH-GUEST-READY"
	payloadMemMiB  = 128
	linuxMemMiB    = 256
	// linuxCmdline is the guest kit's command line (as the end-to-end
	// test in cmd/vsh uses it). On PVM hosts vsh's VMM appends what the
	// nested layer needs; pvmCmdline is the same addition for QEMU.
	linuxCmdline = "console=ttyS0 reboot=k panic=1 pci=off nomodeset noapic init_on_alloc=0 8250.nr_uarts=1"
	pvmCmdline   = "noxsave clearcpuid=smap,popcnt,fsgsbase,invpcid nopti"
	// qemuMicrovmTuned are QEMU's documented knobs for a faster microvm.
	qemuMicrovmTuned = "microvm,x-option-roms=off,acpi=off"
)

// bootTiming is one boot: when the first console byte and the marker
// appeared, counted from the start command's exec, and the VMM's PID.
type bootTiming struct {
	first, marker time.Duration
	pid           int
}

// vshGuest is a domain defined in a private VSH_HOME.
type vshGuest struct {
	vsh, home, name string
}

func (g vshGuest) command(args ...string) *exec.Cmd {
	cmd := exec.Command(g.vsh, append([]string{"-q", "-c", "vsh:///session"}, args...)...)
	cmd.Env = append(os.Environ(), "VSH_HOME="+g.home)
	return cmd
}

func (g vshGuest) run(args ...string) error {
	out, err := g.command(args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("vsh %s: %w: %s", strings.Join(args, " "), err, firstLine(string(out)))
	}
	return nil
}

// defineVSHGuest writes and defines a direct-kernel domain with a serial
// console and the extra device XML in devices (indented for <devices>).
func defineVSHGuest(e *env, name, kernel, initrd, cmdline string, memMiB int, devices string) (vshGuest, error) {
	home, err := os.MkdirTemp("/var/tmp", "vb-") // short: the control socket path is limited
	if err != nil {
		return vshGuest{}, err
	}
	g := vshGuest{vsh: e.vsh, home: home, name: name}
	initrdXML := ""
	if initrd != "" {
		initrdXML = "\n    <initrd>" + initrd + "</initrd>"
	}
	xml := fmt.Sprintf(`<domain type='kvm'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>%s</kernel>%s
    <cmdline>%s</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
%s    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
`, name, memMiB, kernel, initrdXML, cmdline, devices)
	file := filepath.Join(home, name+".xml")
	if err := os.WriteFile(file, []byte(xml), 0o644); err != nil {
		return g, err
	}
	onInterrupt(g.remove)
	return g, g.run("define", file)
}

func (g vshGuest) remove() {
	g.run("destroy", g.name)
	os.RemoveAll(g.home)
}

// consoleLog is where the VMM copies the guest's serial output.
func (g vshGuest) consoleLog() string {
	return filepath.Join(g.home, "run", "domains", g.name+".log")
}

// vmmPID reads the VMM's PID from its state record.
func (g vshGuest) vmmPID() (int, error) {
	paths, _ := filepath.Glob(filepath.Join(g.home, "run", "*", g.name, g.name+".state"))
	more, _ := filepath.Glob(filepath.Join(g.home, "run", "*", g.name+".state"))
	for _, p := range append(paths, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var rec struct {
			PID int `json:"pid"`
		}
		if json.Unmarshal(data, &rec) == nil && rec.PID > 0 {
			return rec.PID, nil
		}
	}
	return 0, fmt.Errorf("no VMM state record with a PID under %s", filepath.Join(g.home, "run"))
}

// boot runs `vsh start` and waits until marker is in the console log or
// timeout passes. The domain is left running. It waits on inotify events
// for the log's directory (no busy polling competing with the VMM for
// CPUs), falling back to polling every 0.1 ms when the directory does not
// exist yet (before the domain's first start).
func (g vshGuest) boot(marker string, timeout time.Duration) (bootTiming, error) {
	log := g.consoleLog()
	os.Remove(log)
	os.Remove(log + ".1")
	watch, werr := newDirWatch(filepath.Dir(log))
	if werr == nil {
		defer watch.Close()
	}
	cmd := g.command("start", g.name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return bootTiming{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var t bootTiming
	deadline := start.Add(timeout)
	startReturned := false
	for {
		data, _ := os.ReadFile(log)
		now := time.Since(start)
		if len(data) > 0 && t.first == 0 {
			t.first = now
		}
		if bytes.Contains(data, []byte(marker)) {
			t.marker = now
			break
		}
		if !startReturned {
			select {
			case err := <-done:
				startReturned = true
				if err != nil {
					return t, fmt.Errorf("vsh start: %w: %s", err, firstLine(out.String()))
				}
			default:
			}
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("no %s on the console after %s (got %q)", marker, timeout, tail(data, 80))
		}
		if werr == nil {
			watch.wait(50 * time.Millisecond)
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if !startReturned {
		if err := <-done; err != nil {
			return t, fmt.Errorf("vsh start: %w: %s", err, firstLine(out.String()))
		}
	}
	pid, err := g.vmmPID()
	t.pid = pid
	return t, err
}

// dirWatch is an inotify watch on one directory's file writes.
type dirWatch struct{ f *os.File }

func newDirWatch(dir string) (*dirWatch, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &dirWatch{f: os.NewFile(uintptr(fd), "inotify")}, nil
}

// wait returns after the next events (which it discards) or after d.
func (w *dirWatch) wait(d time.Duration) {
	w.f.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	w.f.Read(buf)
}

func (w *dirWatch) Close() error { return w.f.Close() }

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// qemuGuest is one QEMU process whose serial port is its stdout.
type qemuGuest struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

// qemuBoot starts QEMU and reads its serial output until marker appears
// or timeout passes. The process is left running; kill it with stop.
func qemuBoot(qemu string, args []string, marker string, timeout time.Duration) (*qemuGuest, bootTiming, error) {
	q := &qemuGuest{cmd: exec.Command(qemu, args...)}
	q.cmd.Stderr = &q.stderr
	stdout, err := q.cmd.StdoutPipe()
	if err != nil {
		return nil, bootTiming{}, err
	}
	start := time.Now()
	if err := q.cmd.Start(); err != nil {
		return nil, bootTiming{}, err
	}
	onInterrupt(func() { q.cmd.Process.Kill() })
	type event struct {
		first, marker time.Duration
		err           error
		seen          []byte
	}
	events := make(chan event, 1)
	go func() {
		r := bufio.NewReader(stdout)
		var seen []byte
		var ev event
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if ev.first == 0 {
					ev.first = time.Since(start)
				}
				seen = append(seen, buf[:n]...)
				if bytes.Contains(seen, []byte(marker)) {
					ev.marker = time.Since(start)
					events <- ev
					io.Copy(io.Discard, r)
					return
				}
			}
			if err != nil {
				ev.err, ev.seen = err, seen
				events <- ev
				return
			}
		}
	}()
	select {
	case ev := <-events:
		if ev.err != nil {
			q.stop()
			return nil, bootTiming{}, fmt.Errorf("QEMU exited before %s: %s", marker, qemuError(q.stderr.String(), ev.seen))
		}
		return q, bootTiming{first: ev.first, marker: ev.marker, pid: q.cmd.Process.Pid}, nil
	case <-time.After(timeout):
		q.stop()
		return nil, bootTiming{}, fmt.Errorf("no %s from QEMU after %s", marker, timeout)
	}
}

// qemuError picks QEMU's own error line out of its stderr, skipping
// CPUID feature warnings.
func qemuError(stderr string, console []byte) string {
	for _, line := range strings.Split(stderr, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.Contains(line, "warning:") {
			return line
		}
	}
	if len(console) > 0 {
		return "console ended with " + strconv.Quote(tail(console, 80))
	}
	return "no output"
}

func (q *qemuGuest) stop() {
	if q.cmd.Process != nil {
		q.cmd.Process.Kill()
		q.cmd.Wait()
	}
}

// qemuArgs is the command line of QEMU microvm booting kernel with 1 vCPU.
func qemuArgs(machine, kernel, initrd, cmdline string, memMiB int) []string {
	args := []string{"-enable-kvm", "-cpu", "host", "-M", machine, "-smp", "1", "-m", strconv.Itoa(memMiB),
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-kernel", kernel}
	if initrd != "" {
		args = append(args, "-initrd", initrd)
	}
	if cmdline != "" {
		args = append(args, "-append", cmdline)
	}
	return args
}

// payloadFiles writes vsh's payload and QEMU's PVH equivalent.
func payloadFiles(e *env) (vshKernel, qemuKernel string, err error) {
	vshKernel = filepath.Join(e.tmp, "payload.elf")
	qemuKernel = filepath.Join(e.tmp, "payload-pvh.elf")
	if err := payload.WriteFile(vshKernel); err != nil {
		return "", "", err
	}
	return vshKernel, qemuKernel, os.WriteFile(qemuKernel, pvhPayload(), 0o644)
}

// qemuPayloadNote is said wherever the peer boots the PVH equivalent.
const qemuPayloadNote = "QEMU cannot load vsh's payload ELF (`Error loading uncompressed kernel without PVH ELF Note`: the payload is entered in 64-bit mode with the Linux zero page), so QEMU boots bench's PVH equivalent (bench/pvh.go): 32-bit PVH entry, the same marker written to COM1 with one `rep outsb`, then `hlt`. QEMU also runs its qboot firmware first; vsh has none."

// kvmMissing says why no VM can run, or "".
func kvmMissing() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "/dev/kvm unusable: " + err.Error()
	}
	f.Close()
	return ""
}

// figureStart is figure 1: `vsh start` to the payload's first console
// byte and to its ready marker, vs QEMU microvm.
func figureStart(e *env) []Row {
	first := Row{Figure: "1a. start to the payload's first console byte", Unit: "ms", LowerBetter: true, PeerName: "qemu-system-x86_64 -M microvm"}
	marker := Row{Figure: "1b. start to the payload's ready marker", Unit: "ms", LowerBetter: true, PeerName: "qemu-system-x86_64 -M microvm"}
	tuned := Row{Figure: "1c. start to the payload's ready marker", Unit: "ms", LowerBetter: true, PeerName: "qemu-system-x86_64 -M " + qemuMicrovmTuned}
	cond := fmt.Sprintf("1 vCPU, %d MiB, 'h' (idle) payload; ", payloadMemMiB) + e.notes.ref("vsh: from the exec of `vsh start` until the text is in the VMM's console log (woken by inotify on the log's directory after an unmeasured warm-up start; the marker is one `rep outsb`, so the first byte and the marker usually arrive in the same write); QEMU: from its exec until the text is on its stdout (-serial stdio).") + " " + e.notes.ref(qemuPayloadNote)
	first.Conditions = "the payload's first OUT instruction (the 'V' of the marker); " + cond
	marker.Conditions, tuned.Conditions = cond, cond
	rows := []*Row{&first, &marker, &tuned}
	if msg := kvmMissing(); msg != "" {
		return missingRows(rows, msg)
	}
	vk, qk, err := payloadFiles(e)
	if err != nil {
		return missingRows(rows, "payload: "+err.Error())
	}
	g, err := defineVSHGuest(e, "bench-payload", vk, "", "h", payloadMemMiB, "")
	defer g.remove()
	if err != nil {
		return missingRows(rows, err.Error())
	}
	qemu, qemuErr := exec.LookPath("qemu-system-x86_64")
	warmUp(g, qemu, qemuErr == nil, qk)
	for i := 0; i < e.runs; i++ {
		t, err := g.boot(payload.ReadyMarker, 30*time.Second)
		first.VSH = addSample(first.VSH, durationMs(t.first), err)
		marker.VSH = addSample(marker.VSH, durationMs(t.marker), err)
		tuned.VSH = marker.VSH
		if err := g.run("destroy", g.name); err != nil {
			first.VSH = addSample(first.VSH, 0, err)
		}
		if qemuErr != nil {
			continue
		}
		for _, m := range []struct {
			machine string
			rows    []*Row
		}{{"microvm", []*Row{&first, &marker}}, {qemuMicrovmTuned, []*Row{&tuned}}} {
			q, t, err := qemuBoot(qemu, qemuArgs(m.machine, qk, "", "", payloadMemMiB), payload.ReadyMarker, 30*time.Second)
			if q != nil {
				q.stop()
			}
			if len(m.rows) == 2 {
				m.rows[0].Peer = addSample(m.rows[0].Peer, durationMs(t.first), err)
				m.rows[1].Peer = addSample(m.rows[1].Peer, durationMs(t.marker), err)
			} else {
				m.rows[0].Peer = addSample(m.rows[0].Peer, durationMs(t.marker), err)
			}
		}
	}
	if qemuErr != nil {
		for _, r := range rows {
			r.Peer = Result{Missing: installHint("qemu-system-x86_64", "qemu-system-x86")}
		}
	}
	return []Row{first, marker, tuned}
}

// warmUp boots the payload once with each VMM, unmeasured, so that the
// binaries are in the page cache and vsh's run directory exists for the
// inotify watch. Failures show up again in the measured runs.
func warmUp(g vshGuest, qemu string, haveQEMU bool, qemuKernel string) {
	if _, err := g.boot(payload.ReadyMarker, 30*time.Second); err == nil {
		g.run("destroy", g.name)
	}
	if haveQEMU {
		if q, _, err := qemuBoot(qemu, qemuArgs("microvm", qemuKernel, "", "", payloadMemMiB), payload.ReadyMarker, 30*time.Second); err == nil {
			q.stop()
		}
	}
}

func missingRows(rows []*Row, msg string) []Row {
	var out []Row
	for _, r := range rows {
		r.VSH = Result{Missing: msg}
		if r.Peer.Missing == "" && len(r.Peer.Samples) == 0 {
			r.Peer = Result{Missing: "not run"}
		}
		out = append(out, *r)
	}
	return out
}

// memoryUse is a process's resident memory split into guest RAM and the
// rest, in MiB.
type memoryUse struct {
	total, guest float64
}

// processMemory reads VmRSS and the resident part of the mappings that
// hold guest RAM: anonymous or shared-memory mappings between guestMiB and
// guestMiB+4 MiB in size (QEMU rounds its RAM block up a little).
func processMemory(pid, guestMiB int) (memoryUse, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memoryUse{}, err
	}
	var m memoryUse
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.total = kb / 1024
			}
		}
	}
	if m.total == 0 {
		return m, fmt.Errorf("no VmRSS for PID %d", pid)
	}
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return m, err
	}
	found := false
	inGuest := false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 { // mapping header
			var lo, hi uint64
			if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
				inGuest = false
				continue
			}
			size := float64(hi-lo) / (1 << 20)
			name := ""
			if len(f) >= 6 {
				name = f[5]
			}
			anon := name == "" || strings.HasPrefix(name, "/memfd:") || strings.HasPrefix(name, "/dev/zero") || strings.HasPrefix(name, "[anon")
			inGuest = anon && size >= float64(guestMiB) && size <= float64(guestMiB+4)
			if inGuest {
				found = true
			}
			continue
		}
		if inGuest && f[0] == "Rss:" && len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m.guest += kb / 1024
		}
	}
	if !found {
		return m, fmt.Errorf("no %d MiB guest RAM mapping in /proc/%d/smaps", guestMiB, pid)
	}
	return m, nil
}

// figureRSS is figure 2: the VMM's resident memory beyond the guest RAM
// it has touched, for an idle payload guest.
func figureRSS(e *env) []Row {
	beyond := Row{Figure: fmt.Sprintf("2a. VMM resident memory beyond guest RAM touched, idle 1 vCPU / %d MiB payload", payloadMemMiB), Unit: "MiB", LowerBetter: true, PeerName: "qemu-system-x86_64 -M microvm"}
	total := Row{Figure: "2b. VMM VmRSS, same guest", Unit: "MiB", LowerBetter: true, PeerName: "qemu-system-x86_64 -M microvm"}
	beyond.Conditions = "VmRSS from /proc/PID/status 200 ms after the ready marker, less the Rss of the guest-RAM mapping in /proc/PID/smaps " + e.notes.ref(qemuPayloadNote)
	total.Conditions = "VmRSS from /proc/PID/status 200 ms after the ready marker (includes the guest RAM touched) " + e.notes.ref(qemuPayloadNote)
	rows := []*Row{&beyond, &total}
	if msg := kvmMissing(); msg != "" {
		return missingRows(rows, msg)
	}
	vk, qk, err := payloadFiles(e)
	if err != nil {
		return missingRows(rows, "payload: "+err.Error())
	}
	g, err := defineVSHGuest(e, "bench-rss", vk, "", "h", payloadMemMiB, "")
	defer g.remove()
	if err != nil {
		return missingRows(rows, err.Error())
	}
	qemu, qemuErr := exec.LookPath("qemu-system-x86_64")
	warmUp(g, qemu, qemuErr == nil, qk)
	for i := 0; i < e.runs; i++ {
		t, err := g.boot(payload.ReadyMarker, 30*time.Second)
		var m memoryUse
		if err == nil {
			time.Sleep(200 * time.Millisecond)
			m, err = processMemory(t.pid, payloadMemMiB)
		}
		beyond.VSH = addSample(beyond.VSH, m.total-m.guest, err)
		total.VSH = addSample(total.VSH, m.total, err)
		g.run("destroy", g.name)
		if qemuErr != nil {
			continue
		}
		q, t, err := qemuBoot(qemu, qemuArgs("microvm", qk, "", "", payloadMemMiB), payload.ReadyMarker, 30*time.Second)
		m = memoryUse{}
		if err == nil {
			time.Sleep(200 * time.Millisecond)
			m, err = processMemory(t.pid, payloadMemMiB)
			q.stop()
		}
		beyond.Peer = addSample(beyond.Peer, m.total-m.guest, err)
		total.Peer = addSample(total.Peer, m.total, err)
	}
	if qemuErr != nil {
		for _, r := range rows {
			r.Peer = Result{Missing: installHint("qemu-system-x86_64", "qemu-system-x86")}
		}
	}
	return []Row{beyond, total}
}

// figureLinux is figure 3: the guest kit's kernel to VSH-GUEST-READY.
func figureLinux(e *env) []Row {
	kernel := filepath.Join(guestKitDir, "vmlinux")
	initrd := filepath.Join(guestKitDir, "initramfs.cpio.gz")
	row := Row{
		Figure:      "3. guest kit Linux kernel to VSH-GUEST-READY",
		Unit:        "s",
		LowerBetter: true,
		PeerName:    "qemu-system-x86_64 -M microvm -kernel vmlinux",
		Conditions:  fmt.Sprintf("%s + %s, 1 vCPU, %d MiB, cmdline %q", kernel, initrd, linuxMemMiB, linuxCmdline),
	}
	rows := []*Row{&row}
	if msg := kvmMissing(); msg != "" {
		return missingRows(rows, msg)
	}
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			return missingRows(rows, f+" missing: run guest/build.sh")
		}
	}
	g, err := defineVSHGuest(e, "bench-linux", kernel, initrd, linuxCmdline, linuxMemMiB, "")
	defer g.remove()
	if err != nil {
		return missingRows(rows, err.Error())
	}
	qemu, qemuErr := exec.LookPath("qemu-system-x86_64")
	qemuCmdline := linuxCmdline
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		qemuCmdline += " " + pvmCmdline
		row.Conditions += fmt.Sprintf("; on this PVM host vsh's VMM appends %q and QEMU is given the same", pvmCmdline)
	}
	peerFailed := false
	for i := 0; i < e.runs; i++ {
		e.log("linux run %d/%d (vsh)", i+1, e.runs)
		t, err := g.boot(guestKitMarker, 15*time.Minute)
		row.VSH = addSample(row.VSH, t.marker.Seconds(), err)
		g.run("destroy", g.name)
		if qemuErr != nil || peerFailed {
			continue
		}
		e.log("linux run %d/%d (QEMU)", i+1, e.runs)
		q, t, err := qemuBoot(qemu, qemuArgs("microvm", kernel, initrd, qemuCmdline, linuxMemMiB), guestKitMarker, 15*time.Minute)
		if q != nil {
			q.stop()
		}
		row.Peer = addSample(row.Peer, t.marker.Seconds(), err)
		if err != nil {
			peerFailed = true // one failure says it; do not wait 15 minutes again
			if strings.Contains(err.Error(), "PVH ELF Note") {
				row.Peer.Missing += " (the guest kit kernel is built without CONFIG_PVH, and its bzImage would go through real-mode setup code)"
			}
			if _, pvm := os.Stat("/sys/module/kvm_pvm"); pvm == nil {
				row.Peer.Missing += "; on nested PVM QEMU cannot boot Linux at all either: it has none of the fix-ups Linux needs there (int3, SYSCALL; see this-machine-kvm.md)"
			}
		}
	}
	if qemuErr != nil {
		row.Peer = Result{Missing: installHint("qemu-system-x86_64", "qemu-system-x86")}
	}
	return []Row{row}
}
