package vmm

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"vsh/hypervisor"
	"vsh/hypervisor/driver"
)

// Mode is the first argument that puts the vsh binary in VMM mode.
const Mode = "__vmm"

// readyFD is the pipe on which the VMM reports its first boot's outcome to
// Launch: "ok\n" or an error sentence.
const readyFD = 3

// Main is the VMM process's entry point (vsh __vmm ...). build assembles
// the machine; it is a parameter so the process model does not depend on
// the device packages.
func Main(args []string, build Builder) int {
	fs := flag.NewFlagSet(Mode, flag.ContinueOnError)
	runDir := fs.String("run-dir", "", "run directory")
	logDir := fs.String("log-dir", "", "console log directory")
	name := fs.String("name", "", "domain name")
	id := fs.Int("id", 0, "domain id")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix(*name + ": ")
	p := Paths{RunDir: *runDir, Name: *name, LogDir: *logDir}
	ready := os.NewFile(readyFD, "ready")
	srv, err := newServer(p, *id, build)
	if err != nil {
		report(ready, err)
		return 1
	}
	return srv.run(ready)
}

// report sends the first boot's outcome to Launch and closes the pipe.
func report(ready *os.File, err error) {
	if ready == nil {
		return
	}
	if err != nil {
		fmt.Fprintf(ready, "%s\n", err)
	} else {
		fmt.Fprintf(ready, "ok\n")
	}
	ready.Close()
}

type server struct {
	paths Paths
	cfg   *hypervisor.Config
	build Builder
	ln    net.Listener
	hub   *consoleHub

	mu      sync.Mutex
	rec     Record
	machine Machine
	// rebootRequested turns the next guest poweroff into a restart
	// (virsh reboot asks the guest to shut down, then boots it again).
	rebootRequested bool
	stopped         bool
}

func newServer(p Paths, id int, build Builder) (*server, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p.ConfigFile())
	if err != nil {
		return nil, fmt.Errorf("read VM configuration: %w", err)
	}
	cfg := new(hypervisor.Config)
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("decode VM configuration %s: %w", p.ConfigFile(), err)
	}
	clog, err := openCappedLog(p.ConsoleLog(), DefaultConsoleLogMax)
	if err != nil {
		return nil, fmt.Errorf("open console log: %w", err)
	}
	os.Remove(p.Socket())
	ln, err := net.Listen("unix", p.Socket())
	if err != nil {
		clog.Close()
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(p.Socket(), 0o600); err != nil {
		ln.Close()
		clog.Close()
		return nil, fmt.Errorf("restrict control socket: %w", err)
	}
	start, _ := procStartTime(os.Getpid())
	s := &server{
		paths: p, cfg: cfg, build: build, ln: ln,
		hub: &consoleHub{log: clog},
		rec: Record{PID: os.Getpid(), ID: id, Name: cfg.Name, UUID: cfg.UUID,
			State: driver.StateRunning, Reason: driver.RunningBooted,
			StartedAt: time.Now().UTC(), ProcStart: start},
	}
	return s, nil
}

func (s *server) setState(st driver.DomainState, reason driver.StateReason, detail string, exited bool) {
	s.mu.Lock()
	s.rec.State, s.rec.Reason, s.rec.Detail, s.rec.Exited = st, reason, detail, exited
	rec := s.rec
	s.mu.Unlock()
	if err := writeRecord(s.paths.StateFile(), rec); err != nil {
		log.Printf("write state record: %v", err)
	}
}

// run boots the machine, serves the control socket and applies the
// lifecycle actions until the domain ends.
func (s *server) run(ready *os.File) int {
	defer func() {
		s.ln.Close()
		os.Remove(s.paths.Socket())
		s.hub.close()
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		<-sigs
		s.destroy()
	}()
	go s.accept()

	first := true
	for {
		m, err := s.build(s.cfg, s.hub)
		if err == nil {
			s.hub.setInput(m.ConsoleInput)
			err = m.Start()
			if err != nil {
				m.Close()
			}
		}
		if err != nil {
			if first {
				s.setState(driver.StateShutoff, driver.ShutoffFailed, err.Error(), true)
				report(ready, err)
				return 1
			}
			log.Printf("restart failed: %v", err)
			s.setState(driver.StateShutoff, driver.ShutoffFailed, err.Error(), true)
			return 1
		}
		s.mu.Lock()
		s.machine = m
		stopped := s.stopped
		s.mu.Unlock()
		if stopped {
			m.Stop()
		}
		s.setState(driver.StateRunning, driver.RunningBooted, "", false)
		if first {
			report(ready, nil)
			first = false
		}
		exit := m.Wait()
		s.mu.Lock()
		s.machine = nil
		reboot := s.rebootRequested
		s.rebootRequested = false
		s.mu.Unlock()
		s.hub.setInput(nil)
		m.Close()
		log.Printf("machine stopped: %v", exit)

		action := s.action(exit, reboot)
		switch action {
		case hypervisor.ActionRestart, hypervisor.ActionRenameRestart, hypervisor.ActionCoredumpRestart:
			continue
		case hypervisor.ActionPreserve:
			// Keep the domain visible as crashed; the VMM stays until destroy.
			s.setState(driver.StateCrashed, driver.CrashedPanicked, exit.Detail, false)
			s.waitDestroy()
			s.setState(driver.StateShutoff, driver.ShutoffDestroyed, "", true)
			return 0
		}
		switch exit.Kind {
		case ExitPoweroff:
			s.setState(driver.StateShutoff, driver.ShutoffShutdown, exit.Detail, true)
		case ExitReboot:
			s.setState(driver.StateShutoff, driver.ShutoffShutdown, exit.Detail, true)
		case ExitCrash:
			s.setState(driver.StateShutoff, driver.ShutoffCrashed, exit.Detail, true)
		case ExitDestroyed:
			s.setState(driver.StateShutoff, driver.ShutoffDestroyed, exit.Detail, true)
		}
		return 0
	}
}

// action picks the <on_*> action for an exit.
func (s *server) action(exit Exit, rebootRequested bool) hypervisor.LifecycleAction {
	def := func(a, d hypervisor.LifecycleAction) hypervisor.LifecycleAction {
		if a == "" {
			return d
		}
		return a
	}
	switch exit.Kind {
	case ExitPoweroff:
		if rebootRequested {
			return hypervisor.ActionRestart
		}
		return def(s.cfg.OnPoweroff, hypervisor.ActionDestroy)
	case ExitReboot:
		return def(s.cfg.OnReboot, hypervisor.ActionRestart)
	case ExitCrash:
		return def(s.cfg.OnCrash, hypervisor.ActionDestroy)
	case ExitDestroyed:
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if rebootRequested && !stopped {
			return hypervisor.ActionRestart // reset
		}
	}
	return hypervisor.ActionDestroy
}

func (s *server) destroy() {
	s.mu.Lock()
	s.stopped = true
	m := s.machine
	s.mu.Unlock()
	if m != nil {
		m.Stop()
	}
}

// waitDestroy blocks until a destroy request arrives (on_crash=preserve).
func (s *server) waitDestroy() {
	for {
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if stopped {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.serve(c)
	}
}

// serve handles one control connection.
func (s *server) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			c.Close()
			return
		}
		var req Request
		resp := Response{OK: true}
		if err := json.Unmarshal(line, &req); err != nil {
			resp = Response{Error: fmt.Sprintf("malformed request: %v", err)}
		} else if req.Op == OpConsole {
			// The response is written by attach under the hub's lock, so it
			// reaches the client before any console output.
			err := s.hub.attach(&bufferedConn{Conn: c, r: r}, req.Force, func() error { return writeResponse(c, resp) })
			if err != nil {
				writeResponse(c, Response{Error: err.Error()})
				continue
			}
			return
		} else if err := s.handle(req, &resp); err != nil {
			resp = Response{Error: err.Error()}
		}
		if err := writeResponse(c, resp); err != nil {
			c.Close()
			return
		}
	}
}

func writeResponse(w io.Writer, resp Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

var errNotRunning = errors.New("Requested operation is not valid: domain is not running")

// restartWait bounds how long a request made during a guest reboot waits
// for the next machine.
const restartWait = 10 * time.Second

// awaitMachine returns the running machine once there is one, or nil when
// the domain leaves the running state or timeout passes first. Only a
// reboot's brief gap gets here, so it polls.
func (s *server) awaitMachine(timeout time.Duration) Machine {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		m, rec := s.machine, s.rec
		s.mu.Unlock()
		if m != nil || rec.Exited || rec.State != driver.StateRunning || time.Now().After(deadline) {
			return m
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (s *server) handle(req Request, resp *Response) error {
	s.mu.Lock()
	m := s.machine
	rec := s.rec
	s.mu.Unlock()
	switch req.Op {
	case OpStatus:
		resp.Record = &rec
		return nil
	case OpDestroy:
		s.destroy()
		return nil
	}
	if m == nil && rec.State == driver.StateRunning && !rec.Exited {
		// A guest reboot: the record still says running while the next
		// machine is being built, as libvirt's domain stays running
		// through a reset. Answer once it is up.
		m = s.awaitMachine(restartWait)
	}
	if m == nil {
		return errNotRunning
	}
	switch req.Op {
	case OpPause:
		if rec.State == driver.StatePaused {
			return errors.New("Requested operation is not valid: domain is already paused")
		}
		if err := m.Pause(); err != nil {
			return err
		}
		s.setState(driver.StatePaused, driver.PausedUser, "", false)
	case OpResume:
		if rec.State != driver.StatePaused {
			return errors.New("Requested operation is not valid: domain is not paused")
		}
		if err := m.Resume(); err != nil {
			return err
		}
		s.setState(driver.StateRunning, driver.RunningUnpaused, "", false)
	case OpShutdown:
		return m.RequestShutdown()
	case OpReboot:
		s.mu.Lock()
		s.rebootRequested = true
		s.mu.Unlock()
		return m.RequestShutdown()
	case OpReset:
		// A hard reset: the current machine stops and a fresh one boots,
		// whatever on_reboot says (as QEMU's system_reset).
		s.mu.Lock()
		s.rebootRequested = true
		s.mu.Unlock()
		m.Stop()
	case OpStats:
		st := m.Stats()
		resp.Stats = &st
	case OpSetMem:
		return s.setMemory(m, req.KiB)
	case OpMemStats:
		ms, err := m.MemoryStats(req.Refresh)
		if err != nil {
			return err
		}
		resp.Memory = &ms
	case OpNICs:
		resp.NICs = m.NICs()
	case OpSetLink:
		if req.MAC == "" {
			return errNoMAC
		}
		return s.setLink(m, req.MAC, req.Up)
	default:
		return fmt.Errorf("unknown control operation %q", req.Op)
	}
	return nil
}
