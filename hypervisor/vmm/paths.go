// Package vmm runs one domain as its own process: the vsh binary
// re-executed in VMM mode ("vsh __vmm"). The shell's driver launches it,
// then talks to it over a Unix control socket (mode 0600) in the run
// directory for status, pause/resume, shutdown, destroy, reboot, reset,
// stats and the serial console. The VMM keeps a state record beside the
// socket so the domain's state is known even after the process died; a
// record that says "running" for a process that no longer exists reads as
// crashed.
package vmm

import (
	"fmt"
	"path/filepath"
)

// Paths names the files of one domain in the run directory.
type Paths struct {
	RunDir string
	Name   string
	// LogDir holds the console log, so it outlives the run directory;
	// "" means RunDir.
	LogDir string
}

// maxSocketPath is the size of sockaddr_un.sun_path less the terminating NUL.
const maxSocketPath = 107

// Socket is the control socket.
func (p Paths) Socket() string { return filepath.Join(p.RunDir, p.Name+".sock") }

// StateFile is the JSON state record the VMM keeps up to date.
func (p Paths) StateFile() string { return filepath.Join(p.RunDir, p.Name+".state") }

// ConfigFile is the engine configuration the VMM was started with.
func (p Paths) ConfigFile() string { return filepath.Join(p.RunDir, p.Name+".json") }

// ConsoleLog is the size-capped copy of the guest's serial console.
func (p Paths) ConsoleLog() string {
	dir := p.LogDir
	if dir == "" {
		dir = p.RunDir
	}
	return filepath.Join(dir, p.Name+".log")
}

// VMMLog receives the VMM process's own stderr (its diagnostics).
func (p Paths) VMMLog() string { return filepath.Join(p.RunDir, p.Name+".vmm.log") }

// check reports whether the socket path fits in a sockaddr_un.
func (p Paths) check() error {
	if len(p.Socket()) > maxSocketPath {
		return fmt.Errorf("control socket path %s is longer than %d bytes; use a shorter run directory (VSH_HOME)", p.Socket(), maxSocketPath)
	}
	return nil
}
