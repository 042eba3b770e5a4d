package local

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// The test binary doubles as the child processes the tests need: a VMM
// stand-in for procEngine, the crash-test worker and the concurrency
// worker. TestMain picks the role from the environment.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("VSH_TEST_VMM") != "":
		vmmMain(os.Getenv("VSH_TEST_VMM"))
	case os.Getenv("VSH_TEST_CRASHER") != "":
		crasherMain()
	case os.Getenv("VSH_TEST_WORKER") != "":
		workerMain()
	default:
		os.Exit(m.Run())
	}
}

// vmmMain is the VMM stand-in: a process that runs until told to stop. On
// SIGTERM (a guest shutdown) it records the reason and exits; SIGKILL
// leaves no record, which procEngine reports as a crash.
func vmmMain(dir string) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	os.WriteFile(filepath.Join(dir, "vmm.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600)
	<-ch
	os.WriteFile(filepath.Join(dir, "vmm.exit"), []byte(strconv.Itoa(int(driver.ShutoffShutdown))), 0o600)
	os.Exit(0)
}

// procEngine is an Engine over real processes (the test binary in VMM
// mode), so the driver's lifecycle code runs against real pids, signals
// and deaths, not canned answers.
type procEngine struct {
	mu     sync.Mutex
	procs  map[int]*exec.Cmd
	done   map[int]chan struct{}
	starts int
}

func newProcEngine() *procEngine {
	return &procEngine{procs: map[int]*exec.Cmd{}, done: map[int]chan struct{}{}}
}

func (e *procEngine) Start(dom *domxml.Domain, runDir string, paused bool, resolve Resolver) (int, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VSH_TEST_VMM="+runDir)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // reap, so a dead VMM is not a zombie
	state := "running"
	if paused {
		state = "paused"
	}
	os.WriteFile(filepath.Join(runDir, "vmm.state"), []byte(state), 0o600)
	e.mu.Lock()
	e.procs[cmd.Process.Pid] = cmd
	e.done[cmd.Process.Pid] = done
	e.starts++
	e.mu.Unlock()
	// Wait until the VMM is up (its signal handler installed).
	for i := 0; i < 2000; i++ {
		if _, err := os.Stat(filepath.Join(runDir, "vmm.pid")); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return cmd.Process.Pid, nil
}

func (e *procEngine) pid(runDir string) int {
	b, _ := os.ReadFile(filepath.Join(runDir, "vmm.pid"))
	n, _ := strconv.Atoi(string(b))
	return n
}

func (e *procEngine) alive(pid int) bool {
	e.mu.Lock()
	done := e.done[pid]
	e.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (e *procEngine) Status(name, runDir string) (EngineStatus, error) {
	pid := e.pid(runDir)
	if pid == 0 || !e.alive(pid) {
		if b, err := os.ReadFile(filepath.Join(runDir, "vmm.exit")); err == nil {
			n, _ := strconv.Atoi(string(b))
			return EngineStatus{State: driver.StateShutoff, Reason: driver.StateReason(n)}, nil
		}
		return EngineStatus{State: driver.StateShutoff, Reason: driver.ShutoffCrashed}, nil
	}
	st := EngineStatus{State: driver.StateRunning, Reason: driver.RunningBooted, PID: pid}
	if b, _ := os.ReadFile(filepath.Join(runDir, "vmm.state")); string(b) == "paused" {
		st.State, st.Reason = driver.StatePaused, driver.PausedUser
	}
	return st, nil
}

func (e *procEngine) Control(name, runDir string, op Op) error {
	pid := e.pid(runDir)
	if pid == 0 || !e.alive(pid) {
		return errors.New("VMM is gone")
	}
	switch op {
	case OpPause:
		return os.WriteFile(filepath.Join(runDir, "vmm.state"), []byte("paused"), 0o600)
	case OpResume:
		return os.WriteFile(filepath.Join(runDir, "vmm.state"), []byte("running"), 0o600)
	case OpShutdown:
		return syscall.Kill(pid, syscall.SIGTERM)
	case OpDestroy:
		syscall.Kill(pid, syscall.SIGKILL)
		e.mu.Lock()
		done := e.done[pid]
		e.mu.Unlock()
		<-done
		return nil
	}
	return nil // reboot, reset: nothing to model
}

// waitState polls until the domain reaches state (guest shutdown is
// asynchronous); it fails the test after a generous bound.
func waitState(t *testing.T, c driver.Conn, name string, state driver.DomainState) driver.DomainInfo {
	t.Helper()
	var d driver.DomainInfo
	for i := 0; i < 1000; i++ {
		var err error
		d, err = c.LookupDomain(name)
		if err == nil && d.State == state {
			return d
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("domain %s never reached %s: %+v", name, state, d)
	return d
}

var _ = json.Marshal
