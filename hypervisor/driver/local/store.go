package local

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/driver"
)

// The on-disk rules every definition follows:
//
//   - A definition is <dir>/<name>.xml and is only ever replaced whole: the
//     new bytes go to a temporary file in the same directory (".<name>.xml.
//     <random>.tmp"), which is fsynced, renamed over the definition, and the
//     directory fsynced. A crash leaves either the old or the new file,
//     plus at worst a stray temporary file that readers ignore and the next
//     writer removes.
//   - Every mutation holds an exclusive flock on the state directory's lock
//     file; reads hold a shared one. Two shells never interleave updates.

// sysErr wraps an OS error as a libvirt "system" error (no prefix).
func sysErr(format string, err error, args ...any) error {
	return &driver.Error{Code: driver.ErrSystem, Detail: fmt.Sprintf(format, args...) + ": " + errText(err), Err: err}
}

// errText returns the strerror part of an OS error.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return err.Error()
}

// writeFileAtomic replaces path with data so that a crash at any moment
// leaves either the old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+base+"."+hex.EncodeToString(rnd[:])+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return sysErr("cannot create '%s'", err, tmp)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return sysErr("cannot write '%s'", err, path)
	}
	return syncDir(dir)
}

// writeCache replaces a cache file atomically but without fsync: losing
// it in a crash only costs a rebuild.
func writeCache(path string, data []byte) {
	var rnd [6]byte
	rand.Read(rnd[:])
	dir, base := filepath.Split(path)
	tmp := filepath.Join(dir, "."+base+"."+hex.EncodeToString(rnd[:])+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return
	}
	if os.Rename(tmp, path) != nil {
		os.Remove(tmp)
	}
}

// removeFile removes path (absent is fine) and syncs its directory so the
// removal survives a crash.
func removeFile(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return sysErr("cannot remove '%s'", err, path)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return sysErr("cannot open directory '%s'", err, dir)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return sysErr("cannot sync directory '%s'", err, dir)
	}
	return nil
}

// isTemp reports whether a directory entry is a writer's temporary file.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp")
}

// cleanTemps removes temporary files left in dir by writers that crashed.
// Only called under the exclusive lock, so no writer is active.
func cleanTemps(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp") {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// listXML returns the object names defined in dir (<name>.xml files),
// ignoring temporary files.
func listXML(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, sysErr("cannot read directory '%s'", err, dir)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if isTemp(n) || !strings.HasSuffix(n, ".xml") || !e.Type().IsRegular() {
			continue
		}
		names = append(names, strings.TrimSuffix(n, ".xml"))
	}
	return names, nil
}

// lockFile is an flock held on a state directory's lock file.
type lockFile struct{ f *os.File }

// lockState takes the lock on path, exclusive for mutations.
func lockState(path string, exclusive bool) (*lockFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil && !exclusive {
		// A reader without write access (virsh -r on the system
		// connection) shares the lock through a read-only descriptor, or
		// reads unlocked when no writer ever created the lock file.
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return &lockFile{}, nil
		}
	}
	if err != nil {
		return nil, sysErr("cannot open lock file '%s'", err, path)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, sysErr("cannot lock '%s'", err, path)
	}
	return &lockFile{f: f}, nil
}

func (l *lockFile) unlock() {
	if l != nil && l.f != nil {
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}

// counter is a persisted monotonic counter (domain IDs).
func nextCounter(path string) (int, error) {
	n := 1
	if b, err := os.ReadFile(path); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			n = v
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, sysErr("cannot read '%s'", err, path)
	}
	if err := writeFileAtomic(path, []byte(strconv.Itoa(n+1)+"\n"), 0o600); err != nil {
		return 0, err
	}
	return n, nil
}

// setMarker creates or removes an autostart marker: a symlink in
// <dir>/autostart pointing at the definition, as libvirt does.
func setMarker(dir, name string, on bool) error {
	ad := filepath.Join(dir, "autostart")
	link := filepath.Join(ad, name+".xml")
	if !on {
		return removeFile(link)
	}
	if err := os.MkdirAll(ad, 0o755); err != nil {
		return sysErr("cannot create directory '%s'", err, ad)
	}
	os.Remove(link)
	if err := os.Symlink(filepath.Join("..", name+".xml"), link); err != nil {
		return sysErr("cannot create autostart link '%s'", err, link)
	}
	return syncDir(ad)
}

func hasMarker(dir, name string) bool {
	_, err := os.Lstat(filepath.Join(dir, "autostart", name+".xml"))
	return err == nil
}
