package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"vsh/hypervisor/driver"
)

// Record is the VMM's state record: what list, dominfo and domstate show
// for a running (or just ended) domain.
type Record struct {
	PID       int                `json:"pid"`
	ID        int                `json:"id"`
	Name      string             `json:"name"`
	UUID      string             `json:"uuid"`
	State     driver.DomainState `json:"state"`
	Reason    driver.StateReason `json:"reason"`
	StartedAt time.Time          `json:"started_at"`
	// ProcStart is the VMM process's start time in clock ticks since boot
	// (field 22 of /proc/PID/stat), so a recycled PID is not mistaken for
	// the VMM.
	ProcStart uint64 `json:"proc_start"`
	// Exited is set once the VMM has finished; Detail says why.
	Exited bool   `json:"exited"`
	Detail string `json:"detail,omitempty"`
}

// writeRecord replaces the state record atomically.
func writeRecord(path string, r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

// ReadRecord reads a state record and checks it against the live process
// table: a record claiming a live state whose process is gone (or is now a
// different process) is reported as crashed, never as running.
func ReadRecord(path string) (Record, error) {
	var r Record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("state record %s: %w", path, err)
	}
	if !r.Exited && !processAlive(r.PID, r.ProcStart) {
		r.Exited = true
		r.State = driver.StateCrashed
		r.Reason = driver.CrashedUnknown
		r.Detail = "VMM process ended without recording an exit"
	}
	return r, nil
}

// processAlive reports whether pid exists and started at start (when known).
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	state, got, err := procStat(pid)
	if err != nil {
		return start == 0 // no /proc: trust kill(pid, 0)
	}
	// A zombie has finished: its parent (often PID 1, once the shell that
	// launched it has exited) just has not reaped it yet.
	if state == 'Z' || state == 'X' {
		return false
	}
	return start == 0 || got == start
}

// procStartTime returns field 22 (starttime) of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat returns the state (field 3) and starttime (field 22) of
// /proc/PID/stat.
func procStat(pid int) (byte, uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may contain spaces; fields resume after
	// the last ')'.
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	var state byte
	var f [19]uint64
	_, err = fmt.Sscan(string(b[i+1:]), &state, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10], &f[11], &f[12], &f[13], &f[14], &f[15], &f[16], &f[17], &f[18])
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return state, f[18], nil
}

// writeFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path, so readers see the old or the new
// contents, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
