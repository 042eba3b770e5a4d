package vmm

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vsh/guest/payload"
	"vsh/hypervisor"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/local"
	"vsh/hypervisor/kvm"
)

// These tests run the real builder (Build) on /dev/kvm with the payload
// guests of package guest/payload: TestMain makes the re-executed test
// binary use Build instead of the scripted machine when realBuilderEnv is
// "1" in its environment, which Launch passes on.
const realBuilderEnv = "VSH_TEST_REAL_BUILDER"

// kvmWait bounds every wait for the guest. A payload reaches its marker in
// milliseconds; the bound only matters on a badly overloaded host.
const kvmWait = 2 * time.Minute

// requireKVM skips the test where /dev/kvm is missing or unusable, and
// makes the VMM processes started from now on use the real builder.
func requireKVM(t testing.TB) {
	t.Helper()
	s, err := kvm.Open("")
	if err != nil {
		t.Skipf("KVM unusable: %v", err)
	}
	s.Close()
	t.Setenv(realBuilderEnv, "1")
}

// payloadKernel writes the payload ELF into the test's temporary directory.
func payloadKernel(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "payload.elf")
	if err := payload.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// payloadConfig is a 1-vCPU payload guest in the given mode.
func payloadConfig(t testing.TB, name string, mode byte, memMiB uint64) *hypervisor.Config {
	return &hypervisor.Config{
		Name: name, UUID: "00000000-0000-4000-8000-" + fmt.Sprintf("%012x", len(name)),
		MemoryBytes: memMiB << 20, VCPUs: 1,
		Boot: hypervisor.Boot{Kernel: payloadKernel(t), Cmdline: string(mode) + " console=ttyS0"},
	}
}

// waitFor polls cond every few milliseconds until it holds or kvmWait
// passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(kvmWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", kvmWait, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// markers counts the payload's ready markers in the console log.
func markers(p Paths) int {
	b, _ := os.ReadFile(p.ConsoleLog())
	return bytes.Count(b, []byte(payload.ReadyMarker))
}

func waitMarkers(t testing.TB, p Paths, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d ready marker(s) in %s", n, p.ConsoleLog()), func() bool { return markers(p) >= n })
}

func waitState(t testing.TB, p Paths, st driver.DomainState, reason driver.StateReason, exited bool) Record {
	t.Helper()
	var r Record
	waitFor(t, fmt.Sprintf("state %v/%v (exited %v)", st, reason, exited), func() bool {
		var err error
		r, err = ReadRecord(p.StateFile())
		return err == nil && r.State == st && r.Reason == reason && r.Exited == exited
	})
	return r
}

// readUntil reads the console stream until want appears.
func readUntil(t testing.TB, conn io.Reader, want string) string {
	t.Helper()
	if c, ok := conn.(net.Conn); ok {
		c.SetReadDeadline(time.Now().Add(kvmWait))
		defer c.SetReadDeadline(time.Time{})
	}
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte(want)) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("console: %v before %q appeared; got %q", err, want, got)
		}
	}
	return string(got)
}

// requireGone waits for pid to end and checks the socket went with it.
func requireGone(t testing.TB, p Paths, pid int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("VMM %d to exit", pid), func() bool {
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		return syscall.Kill(pid, 0) != nil
	})
	if _, err := os.Stat(p.Socket()); !os.IsNotExist(err) {
		t.Errorf("control socket %s left behind (%v)", p.Socket(), err)
	}
}

// TestKVMPayloadMarkerAndEcho boots the echo payloads: the polling one
// and the interrupt-driven one, which needs the UART's IRQ 4 to reach the
// vCPU through the 8259 PIC and the LAPIC's LINT0 (ExtINT).
func TestKVMPayloadMarkerAndEcho(t *testing.T) {
	requireKVM(t)
	for _, mode := range []byte{payload.ModeEcho, payload.ModeIRQEcho} {
		t.Run(string(mode), func(t *testing.T) { testEcho(t, mode) })
	}
}

func testEcho(t *testing.T, mode byte) {
	p, pid := launch(t, payloadConfig(t, "echo-"+string(mode), mode, 64))
	waitMarkers(t, p, 1)
	waitState(t, p, driver.StateRunning, driver.RunningBooted, false)

	c, err := Dial(p.Socket())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.Console(false)
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "hello vsh\r")
	readUntil(t, conn, payload.EchoPrefix+"hello vsh\r\n")
	fmt.Fprint(conn, "second line\r")
	readUntil(t, conn, payload.EchoPrefix+"second line\r\n")

	log, _ := os.ReadFile(p.ConsoleLog())
	if !strings.Contains(string(log), payload.ReadyMarker+"\r\n") || !strings.Contains(string(log), payload.EchoPrefix+"hello vsh") {
		t.Errorf("console log %q lacks the marker or the echo", log)
	}
	// ^D makes the payload power off through the ACPI sleep register.
	conn.Write([]byte{0x04})
	waitState(t, p, driver.StateShutoff, driver.ShutoffShutdown, true)
	requireGone(t, p, pid)
}

func TestKVMPoweroffAndReboot(t *testing.T) {
	requireKVM(t)
	for _, tc := range []struct {
		name     string
		mode     byte
		onReboot hypervisor.LifecycleAction
		markers  int // boots to see before the end (or before destroy)
		running  bool
		reason   driver.StateReason
	}{
		{"poweroff", payload.ModePoweroff, "", 1, false, driver.ShutoffShutdown},
		// The reboot payload reboots at every boot: with restart it keeps
		// coming back until destroyed.
		{"reboot-restart", payload.ModeReboot, hypervisor.ActionRestart, 3, true, driver.RunningBooted},
		{"reboot-destroy", payload.ModeReboot, hypervisor.ActionDestroy, 1, false, driver.ShutoffShutdown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := payloadConfig(t, "k-"+tc.name, tc.mode, 64)
			cfg.OnReboot = tc.onReboot
			p, pid := launch(t, cfg)
			waitMarkers(t, p, tc.markers)
			if tc.running {
				if _, err := Do(p.Socket(), Request{Op: OpDestroy}, 10*time.Second); err != nil {
					t.Fatal(err)
				}
				waitState(t, p, driver.StateShutoff, driver.ShutoffDestroyed, true)
			} else {
				r := waitState(t, p, driver.StateShutoff, tc.reason, true)
				t.Logf("record detail: %q", r.Detail)
			}
			requireGone(t, p, pid)
			if !tc.running {
				if n := markers(p); n != 1 {
					t.Errorf("%d boots, want 1", n)
				}
			}
		})
	}
}

func TestKVMPauseResume(t *testing.T) {
	requireKVM(t)
	p, pid := launch(t, payloadConfig(t, "pause", payload.ModeEcho, 64))
	waitMarkers(t, p, 1)
	c, err := Dial(p.Socket())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.Console(false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := Do(p.Socket(), Request{Op: OpPause}, 10*time.Second); err != nil {
		t.Fatalf("pause: %v", err)
	}
	waitState(t, p, driver.StatePaused, driver.PausedUser, false)
	// Input typed while paused waits in the UART; a paused vCPU cannot echo.
	fmt.Fprint(conn, "typed while paused\r")
	conn.(net.Conn).SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 256)
	if n, _ := conn.Read(buf); n > 0 {
		t.Errorf("paused guest echoed %q", buf[:n])
	}
	conn.(net.Conn).SetReadDeadline(time.Time{})
	if _, err := Do(p.Socket(), Request{Op: OpResume}, 10*time.Second); err != nil {
		t.Fatalf("resume: %v", err)
	}
	waitState(t, p, driver.StateRunning, driver.RunningUnpaused, false)
	readUntil(t, conn, payload.EchoPrefix+"typed while paused\r\n")

	st, err := Engine{}.Status(p.Name, p.RunDir)
	if err != nil || st.State != driver.StateRunning || st.PID != pid {
		t.Errorf("Engine.Status %+v, %v", st, err)
	}
	if err := (Engine{}).Control(p.Name, p.RunDir, local.OpDestroy); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	waitState(t, p, driver.StateShutoff, driver.ShutoffDestroyed, true)
	requireGone(t, p, pid)
}

func TestKVMKilledVMMReadsAsCrashed(t *testing.T) {
	requireKVM(t)
	p, pid := launch(t, payloadConfig(t, "killed", payload.ModeIdle, 64))
	waitMarkers(t, p, 1)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed VMM to go", func() bool {
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		return syscall.Kill(pid, 0) != nil
	})
	st, err := Engine{}.Status(p.Name, p.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != driver.StateShutoff || st.Reason != driver.ShutoffCrashed || st.PID != 0 {
		t.Errorf("status after SIGKILL: %+v, want shut off (crashed)", st)
	}
}

// vmmProcesses lists the live VMM processes whose run directory is under
// dir (read from /proc, so a process this test lost track of shows up).
func vmmProcesses(t testing.TB, dir string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
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
		if len(args) < 2 || args[1] != Mode {
			continue
		}
		for i, a := range args {
			if a == "-run-dir" && i+1 < len(args) && strings.HasPrefix(args[i+1], dir) {
				// A zombie is gone for our purposes once reaped; reap ours.
				var ws syscall.WaitStatus
				if got, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid {
					continue
				}
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestKVMParallelStartDestroy starts 20 payload VMs at once, destroys
// them, and checks nothing is left: no VMM process, no control socket, no
// stray files beside the records, no file descriptor in this process.
func TestKVMParallelStartDestroy(t *testing.T) {
	requireKVM(t)
	const n = 20
	kernel := payloadKernel(t)
	dir, err := os.MkdirTemp("", "vshp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fds := openFDs(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	pids := make([]int, n)
	paths := make([]Paths, n)
	for i := range n {
		paths[i] = Paths{RunDir: dir, Name: fmt.Sprintf("par%02d", i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := &hypervisor.Config{Name: paths[i].Name, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
				MemoryBytes: 64 << 20, VCPUs: 1,
				Boot: hypervisor.Boot{Kernel: kernel, Cmdline: "h console=ttyS0"}}
			pids[i], errs[i] = Launch("", paths[i], i+1, cfg)
		}()
	}
	wg.Wait()
	defer func() {
		for _, pid := range pids {
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			t.Errorf("launch %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}
	for _, p := range paths {
		waitMarkers(t, p, 1)
	}
	if got := len(vmmProcesses(t, dir)); got != n {
		t.Errorf("%d VMM processes running, want %d", got, n)
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Engine{}.Control(paths[i].Name, dir, local.OpDestroy)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("destroy %d: %v", i, err)
		}
	}
	for i, p := range paths {
		requireGone(t, p, pids[i])
		r, err := ReadRecord(p.StateFile())
		if err != nil || r.State != driver.StateShutoff || r.Reason != driver.ShutoffDestroyed {
			t.Errorf("%s: record %+v, %v", p.Name, r, err)
		}
	}
	if left := vmmProcesses(t, dir); len(left) > 0 {
		t.Errorf("VMM processes left: %v", left)
	}
	// What remains is each domain's record, configuration and logs, which
	// the driver removes with the run directory; nothing else.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		name := e.Name()
		ok := false
		for _, suf := range []string{".state", ".json", ".log", ".vmm.log"} {
			if strings.HasSuffix(name, suf) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("unexpected file left in the run directory: %s", name)
		}
	}
	if got := openFDs(t); got > fds {
		t.Errorf("%d file descriptors open after the VMs ended, %d before", got, fds)
	}
}

// vmmMemory is a VMM's resident memory from /proc/PID/smaps, in KiB.
type vmmMemory struct {
	RSS   uint64 // all resident pages
	Guest uint64 // resident pages of the guest RAM mapping
	Anon  uint64 // private anonymous pages, guest RAM included
	File  uint64 // file-backed pages (the vsh binary, libc), shared by all VMMs
}

// Beyond is the VMM's own private memory: anonymous pages outside guest RAM.
func (m vmmMemory) Beyond() uint64 { return m.Anon - m.Guest }

// readVMMMemory reads pid's smaps; the guest RAM is the mapping of exactly
// guestBytes.
func readVMMMemory(pid int, guestBytes uint64) (vmmMemory, error) {
	var m vmmMemory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return m, err
	}
	inGuest := false
	var rss uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "Size:":
			inGuest = v == guestBytes/1024
		case "Rss:":
			rss = v
			m.RSS += v
			if inGuest {
				m.Guest += v
			}
		case "Anonymous:":
			m.Anon += v
			m.File += rss - v
		}
	}
	return m, nil
}

// TestKVMIdleVMMMemory reports (does not assert) the VMM's resident memory
// beyond the guest RAM it touched, for an idle 1-vCPU, 128 MiB guest.
func TestKVMIdleVMMMemory(t *testing.T) {
	requireKVM(t)
	cfg := payloadConfig(t, "rss", payload.ModeIdle, 128)
	p, pid := launch(t, cfg)
	waitMarkers(t, p, 1)
	m, err := readVMMMemory(pid, cfg.MemoryBytes)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.Guest > m.Anon || m.Anon+m.File != m.RSS {
		t.Errorf("inconsistent memory figures %+v", m)
	}
	t.Logf("idle 128 MiB payload VMM: RSS %d KiB = private anonymous %d KiB (guest RAM %d KiB, VMM's own %d KiB) + file-backed %d KiB",
		m.RSS, m.Anon, m.Guest, m.Beyond(), m.File)
	Engine{}.Control(p.Name, p.RunDir, local.OpDestroy)
	requireGone(t, p, pid)
}

func benchDir(b *testing.B) string {
	dir, err := os.MkdirTemp("", "vshb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// BenchmarkKVMLaunchToReady measures Launch until the payload's first
// output (its first instructions) is in the console log, and Launch alone.
func BenchmarkKVMLaunchToReady(b *testing.B) {
	requireKVM(b)
	dir := benchDir(b)
	var launchTotal, readyTotal time.Duration
	for i := 0; b.Loop(); i++ {
		p := Paths{RunDir: dir, Name: fmt.Sprintf("b%d", i)}
		cfg := payloadConfig(b, p.Name, payload.ModeIdle, 128)
		start := time.Now()
		pid, err := Launch("", p, 1, cfg)
		if err != nil {
			b.Fatal(err)
		}
		launched := time.Now()
		for markers(p) == 0 {
			if time.Since(start) > kvmWait {
				b.Fatal("no ready marker")
			}
			time.Sleep(100 * time.Microsecond)
		}
		ready := time.Now()
		launchTotal += launched.Sub(start)
		readyTotal += ready.Sub(start)
		b.StopTimer()
		Engine{}.Control(p.Name, dir, local.OpDestroy)
		requireGone(b, p, pid)
		b.StartTimer()
	}
	b.ReportMetric(float64(launchTotal.Microseconds())/float64(b.N)/1000, "ms-launch/op")
	b.ReportMetric(float64(readyTotal.Microseconds())/float64(b.N)/1000, "ms-to-marker/op")
}

// BenchmarkKVMStartDestroy measures whole start+destroy cycles.
func BenchmarkKVMStartDestroy(b *testing.B) {
	requireKVM(b)
	dir := benchDir(b)
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		p := Paths{RunDir: dir, Name: fmt.Sprintf("c%d", i)}
		pid, err := Launch("", p, 1, payloadConfig(b, p.Name, payload.ModeIdle, 128))
		if err != nil {
			b.Fatal(err)
		}
		if err := (Engine{}).Control(p.Name, dir, local.OpDestroy); err != nil {
			b.Fatal(err)
		}
		requireGone(b, p, pid)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cycles/s")
}

// BenchmarkKVMIdleVMMMemory reports the idle payload VMM's resident memory
// beyond the guest RAM it touched (1 vCPU, 128 MiB): its private anonymous
// pages outside guest RAM, and separately the file-backed pages (binary
// text, libc) that every VMM of the same binary shares.
func BenchmarkKVMIdleVMMMemory(b *testing.B) {
	requireKVM(b)
	dir := benchDir(b)
	var beyond, guest, total, file uint64
	for i := 0; b.Loop(); i++ {
		p := Paths{RunDir: dir, Name: fmt.Sprintf("m%d", i)}
		cfg := payloadConfig(b, p.Name, payload.ModeIdle, 128)
		pid, err := Launch("", p, 1, cfg)
		if err != nil {
			b.Fatal(err)
		}
		waitMarkers(b, p, 1)
		m, err := readVMMMemory(pid, cfg.MemoryBytes)
		if err != nil {
			b.Fatal(err)
		}
		total, guest, beyond, file = total+m.RSS, guest+m.Guest, beyond+m.Beyond(), file+m.File
		Engine{}.Control(p.Name, dir, local.OpDestroy)
		requireGone(b, p, pid)
	}
	n := float64(b.N)
	b.ReportMetric(float64(beyond)/n, "KiB-private-beyond-guest")
	b.ReportMetric(float64(file)/n, "KiB-file-backed")
	b.ReportMetric(float64(guest)/n, "KiB-guest-resident")
	b.ReportMetric(float64(total)/n, "KiB-rss")
}
