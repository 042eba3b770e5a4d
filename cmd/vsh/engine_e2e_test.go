package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vsh/guest/payload"
	"vsh/hypervisor/kvm"
)

// End-to-end tests of the embedded KVM engine through the real vsh binary
// (built by TestMain): domains defined from XML, started with vsh, driven
// through vsh console under a pseudo-terminal, and checked with list,
// domstate and dominfo. The guests are the payload kernels of package
// guest/payload; linux_e2e_test.go boots the guest kit's Linux.

// e2eWait bounds waits for a guest; a payload needs milliseconds, the bound
// only matters on an overloaded host.
const e2eWait = 2 * time.Minute

// requireKVM skips where /dev/kvm is missing or unusable.
func requireKVM(t testing.TB) {
	t.Helper()
	s, err := kvm.Open("")
	if err != nil {
		t.Skipf("KVM unusable: %v", err)
	}
	s.Close()
}

// e2eHome is a short VSH_HOME (control socket paths must stay under 108
// bytes). Cleanup kills any VMM the test left running and removes it.
func e2eHome(t testing.TB) string {
	t.Helper()
	home, err := os.MkdirTemp("", "vsh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range vmmPIDs(home) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		os.RemoveAll(home)
	})
	return home
}

// e2eEnv is an environment whose vsh state lives in home.
func e2eEnv(home string) []string {
	return append(os.Environ(),
		"VSH_HOME="+home, "HOME="+home,
		"XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_RUNTIME_DIR="+filepath.Join(home, "xdgrun"),
		"VSH_DEFAULT_URI=vsh:///session")
}

// vsh runs the binary against vsh:///session.
func vsh(t testing.TB, env []string, args ...string) result {
	t.Helper()
	tt, ok := t.(*testing.T)
	if !ok {
		return runB(t, env, args...)
	}
	return run(tt, env, "", vshBin, append([]string{"-c", "vsh:///session"}, args...)...)
}

// runB is run for benchmarks.
func runB(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(vshBin, append([]string{"-c", "vsh:///session"}, args...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	rc := 0
	if err != nil {
		rc = cmd.ProcessState.ExitCode()
		if rc < 0 {
			t.Fatalf("vsh %v: %v", args, err)
		}
	}
	return result{out.String(), errb.String(), rc}
}

// mustVsh runs vsh and fails the test unless it succeeds.
func mustVsh(t testing.TB, env []string, args ...string) string {
	t.Helper()
	r := vsh(t, env, args...)
	if r.rc != 0 {
		t.Fatalf("vsh %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.rc, r.stdout, r.stderr)
	}
	return r.stdout
}

// payloadDomain writes the payload kernel and a domain XML for it into
// home and returns the XML's path. mode is the payload's command-line
// first character; extra goes inside <devices>.
func payloadDomain(t testing.TB, home, name string, mode byte, extra string) string {
	t.Helper()
	kernel := filepath.Join(home, "payload.elf")
	if _, err := os.Stat(kernel); err != nil {
		if err := payload.WriteFile(kernel); err != nil {
			t.Fatal(err)
		}
	}
	xml := fmt.Sprintf(`<domain type='kvm'>
  <name>%s</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>%s</kernel>
    <cmdline>%c console=ttyS0</cmdline>
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
    </console>%s
  </devices>
</domain>
`, name, kernel, mode, extra)
	path := filepath.Join(home, name+".xml")
	if err := os.WriteFile(path, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// consoleLog is where the engine keeps a domain's console log.
func consoleLog(home, name string) string {
	return filepath.Join(home, "run", "domains", name+".log")
}

// waitLog polls the console log until want has appeared n times.
func waitLog(t testing.TB, home, name, want string, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(consoleLog(home, name))
		if bytes.Count(b, []byte(want)) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q (x%d) in %s after %v; log:\n%s", want, n, consoleLog(home, name), limit, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDomstate polls domstate --reason until it prints want.
func waitDomstate(t testing.TB, env []string, name, want string) {
	t.Helper()
	waitDomstateWithin(t, env, name, want, e2eWait)
}

// waitDomstateWithin is waitDomstate with its own bound.
func waitDomstateWithin(t testing.TB, env []string, name, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var got string
	for time.Now().Before(deadline) {
		got = strings.TrimSpace(vsh(t, env, "domstate", "--reason", name).stdout)
		if got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("domstate --reason %s = %q, want %q", name, got, want)
}

// vmmPIDs lists live VMM processes (vsh __vmm) whose run directory is
// under home, from /proc.
func vmmPIDs(home string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 2 || args[1] != vmmMode {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue // a zombie waiting for its parent: no longer running
			}
		}
		for i, a := range args {
			if a == "-run-dir" && i+1 < len(args) && strings.HasPrefix(args[i+1], home) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// requireClean checks that no VMM, socket or per-domain run state is left
// under home; console logs (NAME.log, kept like libvirt's) may remain.
func requireClean(t testing.TB, home string) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for len(vmmPIDs(home)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pids := vmmPIDs(home); len(pids) > 0 {
		t.Errorf("VMM processes left running: %v", pids)
	}
	filepath.Walk(filepath.Join(home, "run"), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(home, path)
		switch {
		case strings.HasPrefix(rel, "run/domains/") && strings.HasSuffix(path, ".log") && !strings.Contains(strings.TrimPrefix(rel, "run/domains/"), "/"):
		case rel == "run/autostarted":
		default:
			t.Errorf("left behind after undefine: %s", rel)
		}
		return nil
	})
}

func TestE2EPayloadLifecycle(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	xml := payloadDomain(t, home, "pl", payload.ModeEcho, "")

	mustVsh(t, env, "define", xml)
	if out := mustVsh(t, env, "domstate", "--reason", "pl"); strings.TrimSpace(out) != "shut off (unknown)" {
		t.Errorf("defined domain: domstate %q", out)
	}
	start := time.Now()
	if out := mustVsh(t, env, "start", "pl"); !strings.Contains(out, "Domain 'pl' started") {
		t.Errorf("start printed %q", out)
	}
	started := time.Since(start)
	waitLog(t, home, "pl", payload.ReadyMarker, 1, e2eWait)
	t.Logf("vsh start returned after %v, ready marker after %v", started, time.Since(start))

	if out := mustVsh(t, env, "list", "--all"); !regexp.MustCompile(`\s\d+\s+pl\s+running`).MatchString(out) {
		t.Errorf("list --all:\n%s", out)
	}
	waitDomstate(t, env, "pl", "running (booted)")
	info := mustVsh(t, env, "dominfo", "pl")
	for _, want := range []string{"Name:           pl", "State:          running", "CPU(s):         1", "Max memory:     131072 KiB"} {
		if !strings.Contains(info, want) {
			t.Errorf("dominfo lacks %q:\n%s", want, info)
		}
	}

	// The console: virsh's banner, a line echoed by the guest, ^] detaches.
	p := startPTY(t, env, "-c", "vsh:///session", "console", "pl")
	p.expect("Connected to domain 'pl'")
	p.expect("Escape character is ^] (Ctrl + ])")
	p.send("hello from the console\r")
	p.expect(payload.EchoPrefix + "hello from the console")
	p.send("\x1d")
	if err := p.wait(); err != nil {
		t.Errorf("vsh console after ^]: %v; output:\n%s", err, p.out.String())
	}
	if b, _ := os.ReadFile(consoleLog(home, "pl")); !bytes.Contains(b, []byte(payload.EchoPrefix+"hello from the console")) {
		t.Errorf("console log lacks the echoed line:\n%s", b)
	}
	waitDomstate(t, env, "pl", "running (booted)")

	mustVsh(t, env, "suspend", "pl")
	waitDomstate(t, env, "pl", "paused (user)")
	if out := mustVsh(t, env, "list"); !regexp.MustCompile(`pl\s+paused`).MatchString(out) {
		t.Errorf("list while paused:\n%s", out)
	}
	if info := mustVsh(t, env, "dominfo", "pl"); !strings.Contains(info, "State:          paused") {
		t.Errorf("dominfo while paused:\n%s", info)
	}
	mustVsh(t, env, "resume", "pl")
	waitDomstate(t, env, "pl", "running (unpaused)")

	mustVsh(t, env, "destroy", "pl")
	waitDomstate(t, env, "pl", "shut off (destroyed)")
	if out := mustVsh(t, env, "list", "--all"); !regexp.MustCompile(`-\s+pl\s+shut off`).MatchString(out) {
		t.Errorf("list --all after destroy:\n%s", out)
	}
	if info := mustVsh(t, env, "dominfo", "pl"); !strings.Contains(info, "State:          shut off") || !strings.Contains(info, "Id:             -") {
		t.Errorf("dominfo after destroy:\n%s", info)
	}
	mustVsh(t, env, "undefine", "pl")
	requireClean(t, home)
}

// TestE2EPayloadPowersOff: a guest that powers itself off (ACPI S5) ends
// as "shut off (shutdown)"; one that reboots comes back (on_reboot
// restart) until destroyed.
func TestE2EPayloadPowersOff(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	mustVsh(t, env, "define", payloadDomain(t, home, "off", payload.ModePoweroff, ""))
	mustVsh(t, env, "define", payloadDomain(t, home, "rb", payload.ModeReboot, ""))
	mustVsh(t, env, "start", "off")
	waitDomstate(t, env, "off", "shut off (shutdown)")
	waitLog(t, home, "off", payload.ReadyMarker, 1, e2eWait)

	mustVsh(t, env, "start", "rb")
	waitLog(t, home, "rb", payload.ReadyMarker, 3, e2eWait)
	if out := strings.TrimSpace(mustVsh(t, env, "domstate", "rb")); out != "running" {
		t.Errorf("rebooting guest: domstate %q", out)
	}
	mustVsh(t, env, "destroy", "rb")
	waitDomstate(t, env, "rb", "shut off (destroyed)")
	mustVsh(t, env, "undefine", "off")
	mustVsh(t, env, "undefine", "rb")
	requireClean(t, home)
}

// TestE2EConsoleOfStoppedGuestEnds: when the guest powers off while a
// console is attached (^D to the echo payload), vsh console returns. The
// guest is the interrupt-driven echo payload, so console input reaches it
// through the UART interrupt, the PIC and the LAPIC.
func TestE2EConsoleOfStoppedGuestEnds(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	mustVsh(t, env, "create", payloadDomain(t, home, "tr", payload.ModeIRQEcho, ""))
	waitLog(t, home, "tr", payload.ReadyMarker, 1, e2eWait)
	p := startPTY(t, env, "-c", "vsh:///session", "console", "tr")
	p.expect("Escape character is ^] (Ctrl + ])")
	p.send("bye\r")
	p.expect(payload.EchoPrefix + "bye")
	p.send("\x04")
	p.wait()
	// A transient domain is gone once it stops.
	r := vsh(t, env, "domstate", "tr")
	if r.rc == 0 || !strings.Contains(r.stderr, "failed to get domain 'tr'") {
		t.Errorf("transient domain after poweroff: %+v", r)
	}
	requireClean(t, home)
}

// TestE2EUnsupportedRefused: start refuses an element the engine cannot
// run, naming it and its line; nothing is left running.
func TestE2EUnsupportedRefused(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	spice := "\n    <graphics type='spice' autoport='yes'/>"
	xml := payloadDomain(t, home, "sp", payload.ModeIdle, spice)
	// create: the user's own file and the element's line in it.
	src, _ := os.ReadFile(xml)
	line := 1 + strings.Count(string(src[:bytes.Index(src, []byte("<graphics"))]), "\n")
	r := vsh(t, env, "create", xml)
	lineRE := regexp.MustCompile(fmt.Sprintf(`%s:%d:\d+: <graphics type='spice'>`, regexp.QuoteMeta(xml), line))
	if r.rc == 0 || !lineRE.MatchString(r.stderr) {
		t.Errorf("create with spice graphics: rc %d, stderr %q; want %s", r.rc, r.stderr, lineRE)
	}
	// define + start: the element and its line in the stored definition.
	mustVsh(t, env, "define", xml)
	r = vsh(t, env, "start", "sp")
	if r.rc == 0 || !regexp.MustCompile(`sp\.xml:\d+:\d+: <graphics type='spice'>`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "unsupported configuration") {
		t.Errorf("start with spice graphics: rc %d, stderr %q", r.rc, r.stderr)
	}
	waitDomstate(t, env, "sp", "shut off (unknown)")
	mustVsh(t, env, "undefine", "sp")
	requireClean(t, home)
}

// TestE2EParallelStartDestroy starts 20 domains from 20 concurrent vsh
// processes, destroys and undefines them, and checks nothing remains.
func TestE2EParallelStartDestroy(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	const n = 20
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("par%02d", i)
		mustVsh(t, env, "define", payloadDomain(t, home, names[i], payload.ModeIdle, ""))
	}
	parallel := func(args ...string) {
		var wg sync.WaitGroup
		res := make([]result, n)
		t0 := time.Now()
		for i, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = vsh(t, env, append(args, name)...)
			}()
		}
		wg.Wait()
		t.Logf("%d concurrent vsh %s: %v", n, strings.Join(args, " "), time.Since(t0))
		for i, r := range res {
			if r.rc != 0 {
				t.Errorf("vsh %s %s: exit %d: %s", strings.Join(args, " "), names[i], r.rc, r.stderr)
			}
		}
	}
	parallel("start")
	for _, name := range names {
		waitLog(t, home, name, payload.ReadyMarker, 1, e2eWait)
	}
	if got := len(vmmPIDs(home)); got != n {
		t.Errorf("%d VMM processes, want %d", got, n)
	}
	if out := mustVsh(t, env, "list"); strings.Count(out, " running") != n {
		t.Errorf("list shows %d running, want %d:\n%s", strings.Count(out, " running"), n, out)
	}
	parallel("destroy")
	parallel("undefine")
	requireClean(t, home)
}

// BenchmarkE2EStartToMarker times `vsh start` until the payload's ready
// marker (its first instructions) is in the console log, and `vsh
// destroy`; it reports, never asserts.
func BenchmarkE2EStartToMarker(b *testing.B) {
	requireKVM(b)
	home := e2eHome(b)
	env := e2eEnv(home)
	mustVsh(b, env, "define", payloadDomain(b, home, "bm", payload.ModeIdle, ""))
	var startTotal, markerTotal, destroyTotal time.Duration
	for i := 0; b.Loop(); i++ {
		os.Remove(consoleLog(home, "bm"))
		t0 := time.Now()
		mustVsh(b, env, "start", "bm")
		t1 := time.Now()
		for {
			if b, _ := os.ReadFile(consoleLog(home, "bm")); bytes.Contains(b, []byte(payload.ReadyMarker)) {
				break
			}
			if time.Since(t0) > e2eWait {
				b.Fatal("no ready marker")
			}
			time.Sleep(100 * time.Microsecond)
		}
		t2 := time.Now()
		mustVsh(b, env, "destroy", "bm")
		t3 := time.Now()
		startTotal += t1.Sub(t0)
		markerTotal += t2.Sub(t0)
		destroyTotal += t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(startTotal.Microseconds())/n/1000, "ms-vsh-start/op")
	b.ReportMetric(float64(markerTotal.Microseconds())/n/1000, "ms-to-marker/op")
	b.ReportMetric(float64(destroyTotal.Microseconds())/n/1000, "ms-vsh-destroy/op")
}

// TestE2EKilledVMM: a VMM killed with SIGKILL leaves its domain reading
// "shut off (crashed)", never a stale "running", and it can start again.
func TestE2EKilledVMM(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	mustVsh(t, env, "define", payloadDomain(t, home, "kv", payload.ModeIdle, ""))
	mustVsh(t, env, "start", "kv")
	waitLog(t, home, "kv", payload.ReadyMarker, 1, e2eWait)
	pids := vmmPIDs(home)
	if len(pids) != 1 {
		t.Fatalf("VMM processes %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDomstate(t, env, "kv", "shut off (crashed)")
	if out := mustVsh(t, env, "list", "--all"); !regexp.MustCompile(`-\s+kv\s+shut off`).MatchString(out) {
		t.Errorf("list --all after SIGKILL:\n%s", out)
	}
	mustVsh(t, env, "start", "kv")
	waitLog(t, home, "kv", payload.ReadyMarker, 2, e2eWait)
	waitDomstate(t, env, "kv", "running (booted)")
	mustVsh(t, env, "destroy", "kv")
	mustVsh(t, env, "undefine", "kv")
	requireClean(t, home)
}

// TestE2EReset: vsh reset boots the guest again at once (a second ready
// marker) and the domain stays running.
func TestE2EReset(t *testing.T) {
	requireKVM(t)
	home := e2eHome(t)
	env := e2eEnv(home)
	mustVsh(t, env, "define", payloadDomain(t, home, "rs", payload.ModeIdle, ""))
	mustVsh(t, env, "start", "rs")
	waitLog(t, home, "rs", payload.ReadyMarker, 1, e2eWait)
	pids := vmmPIDs(home)
	if out := mustVsh(t, env, "reset", "rs"); !strings.Contains(out, "Domain 'rs' was reset") {
		t.Errorf("reset printed %q", out)
	}
	waitLog(t, home, "rs", payload.ReadyMarker, 2, e2eWait)
	if got := strings.TrimSpace(mustVsh(t, env, "domstate", "rs")); got != "running" {
		t.Errorf("after reset: domstate %q", got)
	}
	if after := vmmPIDs(home); len(pids) != 1 || len(after) != 1 || after[0] != pids[0] {
		t.Errorf("VMM processes before reset %v, after %v: a reset stays in the same VMM", pids, after)
	}
	mustVsh(t, env, "destroy", "rs")
	mustVsh(t, env, "undefine", "rs")
	requireClean(t, home)
}
