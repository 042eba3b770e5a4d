package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vsh/hypervisor"
	"vsh/hypervisor/driver"
)

// The test binary doubles as the VMM: Launch re-executes it with Mode, and
// TestMain runs Main with scriptedMachine, a machine that needs no KVM. It
// lets these tests exercise the process model (detaching, readiness, the
// control socket, state records, console, lifecycle actions) on any host.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Mode {
		build := buildScripted
		if os.Getenv(realBuilderEnv) == "1" {
			build = Build // engine_kvm_test.go: payload guests on /dev/kvm
		}
		os.Exit(Main(os.Args[2:], build))
	}
	os.Exit(m.Run())
}

// scriptedMachine echoes console input back as "echo: LINE" and reacts to
// the commands "poweroff", "reboot" and "panic" typed on the console, like
// a guest shell would; RequestShutdown powers it off.
type scriptedMachine struct {
	console io.Writer
	exit    chan Exit
	once    sync.Once
	mu      sync.Mutex
	paused  bool
	line    []byte
	fail    bool
	// devices plays the balloon and NICs (devices_test.go).
	devices *scriptedDevices
}

var boots int

func buildScripted(cfg *hypervisor.Config, console io.Writer) (Machine, error) {
	if cfg.Boot.Kernel == "missing" {
		return nil, errors.New("kernel missing: no such file or directory")
	}
	boots++
	fmt.Fprintf(console, "boot %d of %s\r\n", boots, cfg.Name)
	return &scriptedMachine{console: console, exit: make(chan Exit, 1), devices: newScriptedDevices(cfg)}, nil
}

func (m *scriptedMachine) Start() error { return nil }
func (m *scriptedMachine) Wait() Exit   { return <-m.exit }
func (m *scriptedMachine) end(e Exit)   { m.once.Do(func() { m.exit <- e }) }
func (m *scriptedMachine) Pause() error {
	m.mu.Lock()
	m.paused = true
	m.mu.Unlock()
	return nil
}
func (m *scriptedMachine) Resume() error {
	m.mu.Lock()
	m.paused = false
	m.mu.Unlock()
	return nil
}
func (m *scriptedMachine) RequestShutdown() error { m.end(Exit{Kind: ExitPoweroff}); return nil }
func (m *scriptedMachine) Stop()                  { m.end(Exit{Kind: ExitDestroyed}) }
func (m *scriptedMachine) ConsoleInput(p []byte) {
	for _, c := range p {
		if c != '\r' && c != '\n' {
			m.line = append(m.line, c)
			continue
		}
		line := string(m.line)
		m.line = nil
		fmt.Fprintf(m.console, "echo: %s\r\n", line)
		switch line {
		case "poweroff":
			m.end(Exit{Kind: ExitPoweroff})
		case "reboot":
			m.end(Exit{Kind: ExitReboot})
		case "panic":
			m.end(Exit{Kind: ExitCrash, Detail: "Kernel panic"})
		}
	}
}
func (m *scriptedMachine) Stats() Stats { return Stats{VCPUTimeNs: []uint64{1}, MemoryKiB: 1024} }
func (m *scriptedMachine) Close() error { return nil }

func launch(t *testing.T, cfg *hypervisor.Config) (Paths, int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := Paths{RunDir: dir, Name: cfg.Name}
	pid, err := Launch("", p, 7, cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return p, pid
}

// waitRecord polls the state record until cond holds.
func waitRecord(t *testing.T, p Paths, cond func(Record) bool) Record {
	t.Helper()
	var r Record
	var err error
	for i := 0; i < 500; i++ {
		r, err = ReadRecord(p.StateFile())
		if err == nil && cond(r) {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("state record never reached the expected state; last %+v, err %v", r, err)
	return r
}

func attach(t *testing.T, p Paths, force bool) (io.ReadWriteCloser, *bufio.Reader) {
	t.Helper()
	c, err := Dial(p.Socket())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.Console(force)
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	return conn, bufio.NewReader(conn)
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	for i := 0; i < 20; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading console for %q: %v", want, err)
		}
		if strings.Contains(line, want) {
			return
		}
	}
	t.Fatalf("console never showed %q", want)
}

func TestLifecycle(t *testing.T) {
	p, pid := launch(t, &hypervisor.Config{Name: "life", UUID: "u"})
	st, err := os.Stat(p.Socket())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %v mode %v", err, st.Mode())
	}
	r := waitRecord(t, p, func(r Record) bool { return r.State == driver.StateRunning })
	if r.PID != pid || r.ID != 7 || r.Name != "life" {
		t.Errorf("record %+v", r)
	}
	for _, tc := range []struct {
		op      string
		wantErr string
		state   driver.DomainState
	}{
		{OpResume, "domain is not paused", driver.StateRunning},
		{OpPause, "", driver.StatePaused},
		{OpPause, "domain is already paused", driver.StatePaused},
		{OpResume, "", driver.StateRunning},
		{"bogus", `unknown control operation "bogus"`, driver.StateRunning},
	} {
		_, err := Do(p.Socket(), Request{Op: tc.op}, 5*time.Second)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want %q", tc.op, err, tc.wantErr)
		}
		resp, err := Do(p.Socket(), Request{Op: OpStatus}, 5*time.Second)
		if err != nil || resp.Record.State != tc.state {
			t.Errorf("after %s: state %v (%v), want %v", tc.op, resp.Record, err, tc.state)
		}
	}
	resp, err := Do(p.Socket(), Request{Op: OpStats}, 5*time.Second)
	if err != nil || resp.Stats == nil || resp.Stats.MemoryKiB != 1024 {
		t.Errorf("stats %+v, %v", resp.Stats, err)
	}
	if _, err := Do(p.Socket(), Request{Op: OpDestroy}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r = waitRecord(t, p, func(r Record) bool { return r.Exited })
	if r.State != driver.StateShutoff || r.Reason != driver.ShutoffDestroyed {
		t.Errorf("after destroy: %+v", r)
	}
	waitGone(t, pid)
	if _, err := os.Stat(p.Socket()); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("VMM process %d still exists", pid)
}

func TestConsoleAndGuestActions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      hypervisor.Config
		command  string
		boots    int // boots seen on the console before the end
		state    driver.DomainState
		reason   driver.StateReason
		stillRun bool
	}{
		{"poweroff", hypervisor.Config{}, "poweroff", 1, driver.StateShutoff, driver.ShutoffShutdown, false},
		{"reboot-restart", hypervisor.Config{}, "reboot", 2, driver.StateRunning, driver.RunningBooted, true},
		{"reboot-destroy", hypervisor.Config{OnReboot: hypervisor.ActionDestroy}, "reboot", 1, driver.StateShutoff, driver.ShutoffShutdown, false},
		{"panic-destroy", hypervisor.Config{}, "panic", 1, driver.StateShutoff, driver.ShutoffCrashed, false},
		{"panic-preserve", hypervisor.Config{OnCrash: hypervisor.ActionPreserve}, "panic", 1, driver.StateCrashed, driver.CrashedPanicked, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Name = "c-" + tc.name
			p, pid := launch(t, &cfg)
			conn, r := attach(t, p, false)
			defer conn.Close()
			// A second client is refused, as libvirt does, unless forced.
			c2, err := Dial(p.Socket())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c2.Console(false); err == nil || !strings.Contains(err.Error(), "Active console session exists") {
				t.Errorf("second console: %v", err)
			}
			c2.Close()
			fmt.Fprintf(conn, "hello\r")
			expectLine(t, r, "echo: hello")
			fmt.Fprintf(conn, "%s\r", tc.command)
			if tc.boots > 1 {
				expectLine(t, r, fmt.Sprintf("boot %d of", tc.boots))
			}
			rec := waitRecord(t, p, func(r Record) bool { return r.State == tc.state && r.Reason == tc.reason })
			if rec.Exited == tc.stillRun {
				t.Errorf("exited=%v, want %v", rec.Exited, !tc.stillRun)
			}
			if !tc.stillRun {
				waitGone(t, pid)
			}
			log, err := os.ReadFile(p.ConsoleLog())
			if err != nil || !strings.Contains(string(log), "echo: hello") {
				t.Errorf("console log %q, %v", log, err)
			}
		})
	}
}

func TestConsoleForceSteals(t *testing.T) {
	p, _ := launch(t, &hypervisor.Config{Name: "steal"})
	first, _ := attach(t, p, false)
	defer first.Close()
	second, r := attach(t, p, true)
	defer second.Close()
	fmt.Fprintf(second, "mine\r")
	expectLine(t, r, "echo: mine")
	buf := make([]byte, 1)
	for {
		if _, err := first.Read(buf); err != nil {
			break // the first client was disconnected
		}
	}
}

func TestShutdownRequest(t *testing.T) {
	p, pid := launch(t, &hypervisor.Config{Name: "shut"})
	if _, err := Do(p.Socket(), Request{Op: OpShutdown}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r := waitRecord(t, p, func(r Record) bool { return r.Exited })
	if r.State != driver.StateShutoff || r.Reason != driver.ShutoffShutdown {
		t.Errorf("after shutdown: %+v", r)
	}
	waitGone(t, pid)
}

func TestKilledVMMReadsAsCrashed(t *testing.T) {
	p, pid := launch(t, &hypervisor.Config{Name: "kill"})
	waitRecord(t, p, func(r Record) bool { return r.State == driver.StateRunning })
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid)
	r, err := ReadRecord(p.StateFile())
	if err != nil {
		t.Fatal(err)
	}
	if r.State != driver.StateCrashed || !r.Exited {
		t.Errorf("record after SIGKILL: %+v", r)
	}
}

func TestLaunchReportsBuildError(t *testing.T) {
	dir := t.TempDir()
	_, err := Launch("", Paths{RunDir: dir, Name: "bad"}, 1, &hypervisor.Config{Name: "bad", Boot: hypervisor.Boot{Kernel: "missing"}})
	if err == nil || !strings.Contains(err.Error(), "kernel missing") {
		t.Fatalf("Launch error %v", err)
	}
	r, err := ReadRecord(Paths{RunDir: dir, Name: "bad"}.StateFile())
	if err != nil || r.State != driver.StateShutoff || r.Reason != driver.ShutoffFailed {
		t.Errorf("record %+v, %v", r, err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	p := Paths{RunDir: "/" + strings.Repeat("d", 120), Name: "x"}
	if _, err := Launch("", p, 1, &hypervisor.Config{Name: "x"}); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Launch error %v", err)
	}
}
