package vmm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vsh/hypervisor"
)

// LaunchTimeout bounds how long Launch waits for the first boot to be set
// up (kernel loaded, devices opened); the guest's own boot is not waited for.
var LaunchTimeout = 60 * time.Second

// Launch starts a VMM process for cfg, detached from the caller (its own
// session, stdio on /dev/null and the VMM log), and waits until it has
// built the machine and started the vCPUs, or failed to. It returns the
// VMM's PID. exe is the vsh binary ("" means this program).
func Launch(exe string, p Paths, id int, cfg *hypervisor.Config) (int, error) {
	if err := p.check(); err != nil {
		return 0, err
	}
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return 0, fmt.Errorf("find the vsh binary: %w", err)
		}
	}
	if err := os.MkdirAll(p.RunDir, 0o700); err != nil {
		return 0, err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := writeFileAtomic(p.ConfigFile(), b, 0o600); err != nil {
		return 0, fmt.Errorf("write VM configuration: %w", err)
	}
	os.Remove(p.StateFile())
	logf, err := os.OpenFile(p.VMMLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	cmd := exec.Command(exe, Mode, "-run-dir", p.RunDir, "-log-dir", p.LogDir, "-name", p.Name, "-id", strconv.Itoa(id))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{wr} // fd 3 = readyFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		wr.Close()
		return 0, fmt.Errorf("start VMM process: %w", err)
	}
	wr.Close()
	pid := cmd.Process.Pid
	// Reap the child if it exits while this process is still around (an
	// interactive shell); after we exit, init adopts it.
	go cmd.Wait()

	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(rd).ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case r := <-ch:
		line := strings.TrimSpace(r.line)
		if line == "ok" {
			return pid, nil
		}
		if line == "" && r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return 0, fmt.Errorf("VMM process exited during start-up; see %s", p.VMMLog())
			}
			return 0, r.err
		}
		return 0, errors.New(line)
	case <-time.After(LaunchTimeout):
		syscall.Kill(pid, syscall.SIGKILL)
		return 0, fmt.Errorf("VMM process did not finish start-up within %v; see %s", LaunchTimeout, p.VMMLog())
	}
}
