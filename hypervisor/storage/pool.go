package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pool types.
const (
	PoolDir     = "dir"
	PoolFS      = "fs"
	PoolNetFS   = "netfs"
	PoolLogical = "logical"
)

// ErrUnsupportedPool is wrapped by errors for pool types vsh cannot run
// yet (logical, iscsi, ...).
var ErrUnsupportedPool = errors.New("storage pool type is not supported")

// PoolSpec is the part of a libvirt pool definition the backends need.
type PoolSpec struct {
	Name string
	// Type is dir, fs, netfs or logical.
	Type string
	// TargetPath is the directory holding the volumes (the mount point
	// for fs and netfs pools). It must be absolute.
	TargetPath string
	// Mode is the target directory's permission bits; 0 means 0755.
	Mode os.FileMode
	// Owner and Group of the target directory; -1 leaves them alone.
	Owner, Group int
	// SourceDevice is the fs pool's block device (a regular file is
	// attached to a loop device). SourceHost and SourceDir name the netfs
	// export. SourceFormat is the file system type ("auto" or "" probes
	// for fs pools; netfs defaults to nfs).
	SourceDevice, SourceHost, SourceDir, SourceFormat string
}

func (p PoolSpec) check() error {
	switch p.Type {
	case PoolDir, PoolFS, PoolNetFS:
	case PoolLogical:
		return fmt.Errorf("pool '%s': %w: 'logical' (not implemented yet in vsh)", p.Name, ErrUnsupportedPool)
	default:
		return fmt.Errorf("pool '%s': %w: '%s'", p.Name, ErrUnsupportedPool, p.Type)
	}
	if p.TargetPath == "" || !filepath.IsAbs(p.TargetPath) {
		return fmt.Errorf("pool '%s': target path '%s' must be absolute", p.Name, p.TargetPath)
	}
	return nil
}

// BuildPool prepares a pool's storage, like virsh pool-build. Every type
// creates the target directory with its permissions. For fs pools,
// overwrite formats the source device with mkfs.<format> unconditionally;
// noOverwrite formats it only when it holds no recognizable file system
// and fails otherwise; with neither flag the device is left alone.
func BuildPool(p PoolSpec, overwrite, noOverwrite bool) error {
	if err := p.check(); err != nil {
		return err
	}
	if overwrite && noOverwrite {
		return errors.New("overwrite and no-overwrite flags are mutually exclusive")
	}
	if (overwrite || noOverwrite) && p.Type != PoolFS {
		return fmt.Errorf("pool '%s': overwrite flags are only supported for fs pools", p.Name)
	}
	if err := buildTarget(p); err != nil {
		return err
	}
	if p.Type != PoolFS || !(overwrite || noOverwrite) {
		return nil
	}
	if p.SourceDevice == "" {
		return fmt.Errorf("pool '%s': missing source device", p.Name)
	}
	format := p.SourceFormat
	if format == "" || format == "auto" {
		format = "ext4"
	}
	if noOverwrite {
		existing, err := ProbeFilesystem(p.SourceDevice)
		if err != nil {
			return fmt.Errorf("pool '%s': %w", p.Name, err)
		}
		if existing != "" {
			return fmt.Errorf("pool '%s': device '%s' already holds a %s file system (use overwrite to format it)", p.Name, p.SourceDevice, existing)
		}
	}
	return mkfs(format, p.SourceDevice)
}

func buildTarget(p PoolSpec) error {
	mode := p.Mode.Perm()
	if mode == 0 {
		mode = 0o755
	}
	if err := os.MkdirAll(p.TargetPath, mode); err != nil {
		return fmt.Errorf("pool '%s': cannot create target: %w", p.Name, err)
	}
	if err := os.Chmod(p.TargetPath, mode); err != nil {
		return fmt.Errorf("pool '%s': %w", p.Name, err)
	}
	if p.Owner != -1 || p.Group != -1 {
		if err := os.Chown(p.TargetPath, p.Owner, p.Group); err != nil {
			return fmt.Errorf("pool '%s': %w", p.Name, err)
		}
	}
	return nil
}

func mkfs(format, device string) error {
	tool := "mkfs." + format
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("cannot format '%s': %s not found", device, tool)
	}
	var args []string
	switch {
	case strings.HasPrefix(format, "ext"):
		args = []string{"-F", "-q"}
	case format == "xfs" || format == "btrfs":
		args = []string{"-f", "-q"}
	}
	out, err := exec.Command(tool, append(args, device)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s failed: %v: %s", tool, device, err, bytes.TrimSpace(out))
	}
	return nil
}

// ProbeFilesystem returns the type of the file system on device ("ext2",
// "ext3", "ext4", "xfs", "btrfs", "vfat") or "" when none is recognized.
func ProbeFilesystem(device string) (string, error) {
	f, err := os.Open(device)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 0x10048)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read %s: %w", device, err)
	}
	buf = buf[:n]
	le := binary.LittleEndian
	switch {
	case len(buf) >= 1024+0x68 && le.Uint16(buf[1024+0x38:]) == 0xef53:
		compat := le.Uint32(buf[1024+0x5c:])
		incompat := le.Uint32(buf[1024+0x60:])
		switch {
		case incompat&0x40 != 0 || incompat&0x200 != 0: // extents or flex_bg
			return "ext4", nil
		case compat&0x4 != 0: // has_journal
			return "ext3", nil
		}
		return "ext2", nil
	case len(buf) >= 4 && string(buf[:4]) == "XFSB":
		return "xfs", nil
	case len(buf) >= 0x10048 && string(buf[0x10040:0x10048]) == "_BHRfS_M":
		return "btrfs", nil
	case len(buf) >= 0x5a && (string(buf[0x52:0x57]) == "FAT32" || string(buf[0x36:0x39]) == "FAT"):
		return "vfat", nil
	}
	return "", nil
}

// StartPool makes a pool usable, like virsh pool-start: dir pools need
// their target directory; fs pools mount the source device (regular files
// through a loop device) and netfs pools mount host:dir over NFS.
func StartPool(p PoolSpec) error {
	if err := p.check(); err != nil {
		return err
	}
	fi, err := os.Stat(p.TargetPath)
	if err != nil {
		return fmt.Errorf("pool '%s': cannot open directory '%s': %w", p.Name, p.TargetPath, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("pool '%s': target '%s' is not a directory", p.Name, p.TargetPath)
	}
	switch p.Type {
	case PoolFS:
		return mountFS(p)
	case PoolNetFS:
		return mountNetFS(p)
	}
	return nil
}

func mountFS(p PoolSpec) error {
	if p.SourceDevice == "" {
		return fmt.Errorf("pool '%s': missing source device", p.Name)
	}
	if mounted, err := IsMounted(p.TargetPath); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("pool '%s': target '%s' is already mounted", p.Name, p.TargetPath)
	}
	dev := p.SourceDevice
	fi, err := os.Stat(dev)
	if err != nil {
		return fmt.Errorf("pool '%s': source device: %w", p.Name, err)
	}
	fstype := p.SourceFormat
	if fstype == "" || fstype == "auto" {
		if fstype, err = ProbeFilesystem(p.SourceDevice); err != nil {
			return fmt.Errorf("pool '%s': %w", p.Name, err)
		}
		if fstype == "" {
			return fmt.Errorf("pool '%s': no known file system on '%s'; set the source format or build the pool", p.Name, p.SourceDevice)
		}
	}
	if fi.Mode().IsRegular() {
		loop, hold, err := attachLoop(dev)
		if err != nil {
			return fmt.Errorf("pool '%s': %w", p.Name, err)
		}
		// Autoclear detaches the loop device on its last close, so hold it
		// open until the mount owns it.
		defer hold.Close()
		dev = loop
	}
	err = unix.Mount(dev, p.TargetPath, fstype, unix.MS_NOSUID|unix.MS_NODEV, "")
	if err != nil && strings.HasPrefix(fstype, "ext") && fstype != "ext4" {
		// The ext4 driver mounts ext2 and ext3 when those are not built.
		err = unix.Mount(dev, p.TargetPath, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "")
	}
	if err != nil {
		return fmt.Errorf("pool '%s': mount %s (%s) on %s: %w", p.Name, p.SourceDevice, fstype, p.TargetPath, err)
	}
	return nil
}

// attachLoop binds a regular file to a free loop device that detaches
// itself when the last user (the mount) goes away. The caller must keep
// the returned file open until the device is mounted.
func attachLoop(file string) (string, *os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, fmt.Errorf("loop devices unavailable: %w", err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", nil, fmt.Errorf("no free loop device: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	if _, err := os.Stat(dev); errors.Is(err, os.ErrNotExist) {
		if err := unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))); err != nil {
			return "", nil, fmt.Errorf("create %s: %w", dev, err)
		}
	}
	backing, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	defer backing.Close()
	loop, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:], file)
	if err := unix.IoctlLoopConfigure(int(loop.Fd()), &cfg); err != nil {
		// Older kernels: LOOP_SET_FD then LOOP_SET_STATUS64.
		if err := unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
			loop.Close()
			return "", nil, fmt.Errorf("attach %s to %s: %w", file, dev, err)
		}
		if err := unix.IoctlLoopSetStatus64(int(loop.Fd()), &cfg.Info); err != nil {
			unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
			loop.Close()
			return "", nil, fmt.Errorf("configure %s: %w", dev, err)
		}
	}
	return dev, loop, nil
}

func mountNetFS(p PoolSpec) error {
	if p.SourceHost == "" || p.SourceDir == "" {
		return fmt.Errorf("pool '%s': netfs pools need a source host and directory", p.Name)
	}
	format := p.SourceFormat
	if format == "" || format == "auto" {
		format = "nfs"
	}
	if format != "nfs" {
		return fmt.Errorf("pool '%s': %w: netfs format '%s' (only nfs)", p.Name, ErrUnsupportedPool, format)
	}
	if mounted, err := IsMounted(p.TargetPath); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("pool '%s': target '%s' is already mounted", p.Name, p.TargetPath)
	}
	addrs, err := net.LookupHost(p.SourceHost)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("pool '%s': cannot resolve '%s': %v", p.Name, p.SourceHost, err)
	}
	// The kernel's NFS client takes text options but not host names.
	src := p.SourceHost + ":" + p.SourceDir
	data := "vers=4.2,addr=" + addrs[0]
	if err := unix.Mount(src, p.TargetPath, "nfs4", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		data = "vers=3,nolock,addr=" + addrs[0] + ",mountaddr=" + addrs[0]
		if err3 := unix.Mount(src, p.TargetPath, "nfs", unix.MS_NOSUID|unix.MS_NODEV, data); err3 != nil {
			return fmt.Errorf("pool '%s': mount %s on %s: %w (NFSv3: %v)", p.Name, src, p.TargetPath, err, err3)
		}
	}
	return nil
}

// StopPool undoes StartPool (pool-destroy): fs and netfs pools are
// unmounted; dir pools need nothing.
func StopPool(p PoolSpec) error {
	if err := p.check(); err != nil {
		return err
	}
	if p.Type == PoolDir {
		return nil
	}
	mounted, err := IsMounted(p.TargetPath)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(p.TargetPath, 0); err != nil {
		return fmt.Errorf("pool '%s': unmount %s: %w", p.Name, p.TargetPath, err)
	}
	return nil
}

// DeletePool removes the pool's target directory (pool-delete); it must be
// empty and, for fs and netfs pools, not mounted.
func DeletePool(p PoolSpec) error {
	if err := p.check(); err != nil {
		return err
	}
	if mounted, err := IsMounted(p.TargetPath); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("pool '%s': target '%s' is still mounted", p.Name, p.TargetPath)
	}
	if err := unix.Rmdir(p.TargetPath); err != nil {
		return fmt.Errorf("failed to remove pool '%s' directory '%s': %w", p.Name, p.TargetPath, err)
	}
	return nil
}

// PoolUsage returns the capacity, allocation and available bytes of the
// file system holding the pool's target, as libvirt computes them.
func PoolUsage(p PoolSpec) (capacity, allocation, available uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p.TargetPath, &st); err != nil {
		return 0, 0, 0, fmt.Errorf("pool '%s': statfs %s: %w", p.Name, p.TargetPath, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return st.Blocks * bs, (st.Blocks - st.Bfree) * bs, st.Bavail * bs, nil
}

// IsMounted reports whether path is a mount point in this mount namespace.
func IsMounted(path string) (bool, error) {
	clean, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == clean {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMount decodes the octal escapes (\040 for space) in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
