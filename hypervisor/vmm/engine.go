package vmm

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/local"
)

// Engine runs the local driver's domains as VMM processes; it implements
// local.Engine.
type Engine struct {
	// Exe is the vsh binary to re-execute ("" means this program).
	Exe string
}

var (
	_ local.Engine        = Engine{}
	_ local.ConsoleEngine = Engine{}
)

// paths places a domain's socket and records in its run directory and its
// console log beside that directory, so the log survives the domain's
// stop (the driver removes the run directory then).
func paths(name, runDir string) Paths {
	return Paths{RunDir: runDir, Name: name, LogDir: filepath.Dir(runDir)}
}

// ConsoleLogPath returns where the console log of a domain with that run
// directory is kept.
func ConsoleLogPath(name, runDir string) string { return paths(name, runDir).ConsoleLog() }

// Start converts the domain to an engine configuration, refusing it with
// every unsupported element listed, and launches its VMM.
func (e Engine) Start(dom *domxml.Domain, runDir string, paused bool, resolve local.Resolver) (int, error) {
	cfg, unsupported, err := dom.ToConfigWith(resolve.Volume)
	if err != nil {
		return 0, driver.Errorf(driver.ErrConfigUnsupported, "%v", err)
	}
	for i, n := range cfg.NICs {
		if n.Network == "" || n.Bridge != "" {
			continue
		}
		if resolve.NetworkBridge == nil {
			return 0, driver.Errorf(driver.ErrConfigUnsupported, "network '%s' cannot be resolved by this connection", n.Network)
		}
		bridge, err := resolve.NetworkBridge(n.Network)
		if err != nil {
			return 0, err
		}
		cfg.NICs[i].Bridge = bridge
	}
	if len(unsupported) > 0 {
		lines := make([]string, len(unsupported))
		for i, u := range unsupported {
			lines[i] = u.String()
		}
		return 0, driver.Errorf(driver.ErrConfigUnsupported, "the vsh engine cannot run domain '%s':\n%s", dom.Name, strings.Join(lines, "\n"))
	}
	p := paths(dom.Name, runDir)
	if cfg.Vsock != nil && cfg.Vsock.UDSPath == "" {
		cfg.Vsock.UDSPath = filepath.Join(runDir, dom.Name+".vsock")
	}
	pid, err := Launch(e.Exe, p, 0, cfg)
	if err != nil {
		return 0, driver.Errorf(driver.ErrOperationFailed, "%v", err)
	}
	if paused {
		if _, err := Do(p.Socket(), Request{Op: OpPause}, 10*time.Second); err != nil {
			e.Control(dom.Name, runDir, local.OpDestroy)
			return 0, driver.Errorf(driver.ErrOperationFailed, "pause after start: %v", err)
		}
	}
	return pid, nil
}

// Status reads the VMM's state record; for a live VMM it also asks for the
// CPU time and balloon size.
func (e Engine) Status(name, runDir string) (local.EngineStatus, error) {
	p := paths(name, runDir)
	r, err := ReadRecord(p.StateFile())
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			// No record: the VMM never got as far as writing one.
			return local.EngineStatus{State: driver.StateShutoff, Reason: driver.ShutoffFailed}, nil
		}
		return local.EngineStatus{}, err
	}
	st := local.EngineStatus{State: r.State, Reason: r.Reason, PID: r.PID}
	if r.Exited {
		st.PID = 0
		if r.State != driver.StateShutoff {
			// The VMM died without finishing: shut off, crashed.
			st.State, st.Reason = driver.StateShutoff, driver.ShutoffCrashed
		}
		return st, nil
	}
	if resp, err := Do(p.Socket(), Request{Op: OpStats}, 2*time.Second); err == nil && resp.Stats != nil {
		st.CPUTime = time.Duration(resp.Stats.CPUTimeNs)
		st.MemoryKiB = resp.Stats.BalloonKiB
		if st.MemoryKiB == 0 {
			st.MemoryKiB = resp.Stats.MemoryKiB
		}
	}
	return st, nil
}

// Control sends op to the VMM. Destroy waits for the process to end and
// kills it if it does not end on its own.
func (e Engine) Control(name, runDir string, op local.Op) error {
	p := paths(name, runDir)
	if op != local.OpDestroy {
		_, err := Do(p.Socket(), Request{Op: string(op)}, 10*time.Second)
		if err != nil {
			return controlError(err)
		}
		return nil
	}
	r, rerr := ReadRecord(p.StateFile())
	Do(p.Socket(), Request{Op: OpDestroy}, 5*time.Second)
	if rerr != nil || r.Exited {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !processAlive(r.PID, r.ProcStart) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The VMM did not stop: kill it and record the destroy ourselves.
	syscall.Kill(r.PID, syscall.SIGKILL)
	r.Exited, r.State, r.Reason, r.Detail = true, driver.StateShutoff, driver.ShutoffDestroyed, "killed after destroy timed out"
	return writeRecord(p.StateFile(), r)
}

// controlError turns a VMM's error sentence into a driver error.
func controlError(err error) error {
	msg := err.Error()
	for _, c := range []struct {
		prefix string
		code   driver.ErrorCode
	}{
		{"Requested operation is not valid: ", driver.ErrOperationInvalid},
		{"Operation not supported: ", driver.ErrOperationUnsupported},
		{"operation failed: ", driver.ErrOperationFailed},
		{"invalid argument: ", driver.ErrInvalidArg},
	} {
		if strings.HasPrefix(msg, c.prefix) {
			return driver.Errorf(c.code, "%s", strings.TrimPrefix(msg, c.prefix))
		}
	}
	if errors.Is(err, ErrNotRunning) {
		return driver.Errorf(driver.ErrOperationInvalid, "domain is not running")
	}
	return driver.Errorf(driver.ErrOperationFailed, "%v", err)
}

// String makes Exit readable in logs.
func (e Exit) String() string {
	kinds := []string{"poweroff", "reboot", "crash", "destroyed"}
	k := fmt.Sprint(int(e.Kind))
	if int(e.Kind) < len(kinds) {
		k = kinds[e.Kind]
	}
	if e.Detail == "" {
		return k
	}
	return k + ": " + e.Detail
}

// Console attaches to the domain's serial console through its VMM; with
// force an existing session is disconnected. devname may name the serial
// port ("serial0", "console0") or be empty.
func (e Engine) Console(name, runDir, devname string, force bool) (io.ReadWriteCloser, error) {
	switch devname {
	case "", "serial0", "console0":
	default:
		return nil, driver.Errorf(driver.ErrInternal, "character device %s is not using a PTY", devname)
	}
	c, err := Dial(paths(name, runDir).Socket())
	if err != nil {
		return nil, controlError(err)
	}
	conn, err := c.Console(force)
	if err != nil {
		c.Close()
		return nil, controlError(err)
	}
	return conn, nil
}
