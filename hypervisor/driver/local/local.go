// Package local is the vsh:///session and vsh:///system connection
// driver: definitions kept as plain XML files, one per object, running
// state in small JSON records beside them, and the embedded KVM engine
// (through the Engine interface) running the domains.
//
// State directory layout (see Paths for where each root is):
//
//	<config>/domains/<name>.xml           persistent domain definitions
//	<config>/domains/autostart/<name>.xml symlink -> ../<name>.xml
//	<config>/networks/<name>.xml          persistent networks (+ autostart/)
//	<config>/storage/<name>.xml           persistent pools (+ autostart/)
//	<state>/lock                          flock: exclusive to change, shared to read
//	<state>/next-domain-id                the next domain ID (monotonic)
//	<state>/domains.index                 listing cache, validated per file
//	<run>/domains/<name>/state.json       running-state record (pid, id, state, reason, start time)
//	<run>/domains/<name>/live.xml         the running definition
//	<run>/domains/<name>/...              the engine's files (control socket, console log)
//	<run>/networks/<name>/live.xml        an active network's definition
//	<run>/storage/<name>/live.xml         an active pool's definition
//
// Transient objects exist only under <run>. Files are replaced atomically
// and every change holds the lock, so a crash or a second shell never
// leaves a half-written or lost definition.
package local

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"vsh/hypervisor/driver"
)

func init() { driver.Register("vsh", Open) }

// Paths are the roots of a connection's state.
type Paths struct {
	Config string // definitions
	State  string // lock, counters, caches
	Run    string // running-state records
}

// DefaultPaths returns the state roots of vsh:///system (system=true) or
// vsh:///session. VSH_HOME relocates everything to $VSH_HOME/{etc,lib,run}.
func DefaultPaths(system bool) (Paths, error) {
	if h := os.Getenv("VSH_HOME"); h != "" {
		return Paths{Config: filepath.Join(h, "etc"), State: filepath.Join(h, "lib"), Run: filepath.Join(h, "run")}, nil
	}
	if system {
		return Paths{Config: "/etc/vsh", State: "/var/lib/vsh", Run: "/run/vsh"}, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return Paths{}, driver.Errorf(driver.ErrNoConnect, "cannot find the home directory: %v", err)
	}
	env := func(name, fallback string) string {
		if v := os.Getenv(name); v != "" && filepath.IsAbs(v) {
			return v
		}
		return fallback
	}
	run := filepath.Join(home, ".cache", "vsh", "run")
	if v := env("XDG_RUNTIME_DIR", ""); v != "" {
		run = filepath.Join(v, "vsh")
	}
	return Paths{
		Config: filepath.Join(env("XDG_CONFIG_HOME", filepath.Join(home, ".config")), "vsh"),
		State:  filepath.Join(env("XDG_DATA_HOME", filepath.Join(home, ".local", "share")), "vsh"),
		Run:    run,
	}, nil
}

// Conn is a connection to the local driver.
type Conn struct {
	uri      string
	system   bool
	readOnly bool
	paths    Paths
}

var _ driver.Conn = (*Conn)(nil)

// Open connects to vsh:///session or vsh:///system.
func Open(uri string, readOnly bool) (driver.Conn, error) {
	var system bool
	switch strings.TrimSuffix(uri, "/") {
	case "vsh:///system":
		system = true
	case "vsh:///session":
	default:
		return nil, driver.Errorf(driver.ErrNoConnect, "no connection driver available for %s", uri)
	}
	p, err := DefaultPaths(system)
	if err != nil {
		return nil, err
	}
	return OpenPaths(uri, p, system, readOnly)
}

// OpenPaths connects with explicit state roots (tests, tools).
func OpenPaths(uri string, p Paths, system, readOnly bool) (*Conn, error) {
	c := &Conn{uri: uri, system: system, readOnly: readOnly, paths: p}
	for _, d := range []string{p.Config, p.State, p.Run,
		c.domDir(), c.netDir(), c.poolDir(), c.runDomDir(), c.runNetDir(), c.runPoolDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			if readOnly && errors.Is(err, fs.ErrPermission) {
				continue
			}
			return nil, &driver.Error{Code: driver.ErrNoConnect, Detail: fmt.Sprintf("cannot create state directory '%s': %s", d, errText(err)), Err: err}
		}
	}
	if system && !readOnly {
		if err := c.ensureDefaultNetwork(); err != nil {
			return nil, err
		}
	}
	if !readOnly {
		c.autostart()
	}
	return c, nil
}

// autostart starts the objects marked for autostart once per boot (the
// run directory lives on tmpfs, so its marker vanishes at reboot), as
// libvirtd does when it starts: pools, then networks, then domains.
// Failures are recorded in <run>/autostart.log; they must not stop the
// shell from connecting.
func (c *Conn) autostart() {
	marker := filepath.Join(c.paths.Run, "autostarted")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	l, err := lockState(filepath.Join(c.paths.State, "lock"), true)
	if err != nil {
		return
	}
	if _, err := os.Stat(marker); err == nil {
		l.unlock()
		return
	}
	if err := writeFileAtomic(marker, []byte("1\n"), 0o600); err != nil {
		l.unlock()
		return
	}
	l.unlock()
	var log strings.Builder
	note := func(kind, name string, err error) {
		if err != nil {
			fmt.Fprintf(&log, "autostart %s %s: %v\n", kind, name, err)
		}
	}
	if pools, err := c.ListPools(); err == nil {
		for _, p := range pools {
			if p.Autostart && !p.Active() {
				note("pool", p.Name, c.StartPool(p.Name))
			}
		}
	}
	if nets, err := c.ListNetworks(); err == nil {
		for _, n := range nets {
			if n.Autostart && !n.Active {
				note("network", n.Name, c.StartNetwork(n.Name))
			}
		}
	}
	if doms, err := c.ListDomains(); err == nil {
		for _, d := range doms {
			if d.Autostart && !d.Active() {
				_, err := c.StartDomain(d.Name, false)
				note("domain", d.Name, err)
			}
		}
	}
	if log.Len() > 0 {
		writeFileAtomic(filepath.Join(c.paths.Run, "autostart.log"), []byte(log.String()), 0o600)
	}
}

func (c *Conn) domDir() string     { return filepath.Join(c.paths.Config, "domains") }
func (c *Conn) netDir() string     { return filepath.Join(c.paths.Config, "networks") }
func (c *Conn) poolDir() string    { return filepath.Join(c.paths.Config, "storage") }
func (c *Conn) runDomDir() string  { return filepath.Join(c.paths.Run, "domains") }
func (c *Conn) runNetDir() string  { return filepath.Join(c.paths.Run, "networks") }
func (c *Conn) runPoolDir() string { return filepath.Join(c.paths.Run, "storage") }

// read takes the shared state lock.
func (c *Conn) read() (*lockFile, error) {
	return lockState(filepath.Join(c.paths.State, "lock"), false)
}

// write refuses read-only connections and takes the exclusive lock.
func (c *Conn) write(api string) (*lockFile, error) {
	if c.readOnly {
		return nil, driver.Errorf(driver.ErrOperationForbidden, "read only access prevents %s", api)
	}
	l, err := lockState(filepath.Join(c.paths.State, "lock"), true)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (c *Conn) writable(api string) error {
	if c.readOnly {
		return driver.Errorf(driver.ErrOperationForbidden, "read only access prevents %s", api)
	}
	return nil
}

// Close releases the connection; it holds nothing between calls.
func (c *Conn) Close() error { return nil }

// URI returns the connection's URI.
func (c *Conn) URI() string { return c.uri }

// ReadOnly reports whether the connection refuses mutations.
func (c *Conn) ReadOnly() bool { return c.readOnly }

// StatePaths returns the connection's state roots.
func (c *Conn) StatePaths() Paths { return c.paths }

// Hostname returns the host's name.
func (c *Conn) Hostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", sysErr("cannot get hostname", err)
	}
	return h, nil
}

// Version is vsh's hypervisor version, major*1000000 + minor*1000 + micro.
const Version = 1000

// HypervisorVersion returns "VSH" and the engine's version.
func (c *Conn) HypervisorVersion() (string, uint64, error) { return "VSH", Version, nil }

// NodeInfo reads the host's CPU and memory facts from /proc.
func (c *Conn) NodeInfo() (driver.NodeInfo, error) {
	n := driver.NodeInfo{CPUs: runtime.NumCPU(), NUMANodes: 1, SocketsPerNode: 1, CoresPerSocket: 1, ThreadsPerCore: 1}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sockets := map[string]bool{}
		cores, siblings := 0, 0
		s := bufio.NewScanner(f)
		for s.Scan() {
			k, v, ok := strings.Cut(s.Text(), ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "cpu MHz":
				if n.MHz == 0 {
					f, _ := strconv.ParseFloat(v, 64)
					n.MHz = int(f)
				}
			case "physical id":
				sockets[v] = true
			case "cpu cores":
				cores, _ = strconv.Atoi(v)
			case "siblings":
				siblings, _ = strconv.Atoi(v)
			}
		}
		f.Close()
		if len(sockets) > 0 {
			n.SocketsPerNode = len(sockets)
		}
		if cores > 0 {
			n.CoresPerSocket = cores
			if siblings >= cores {
				n.ThreadsPerCore = siblings / cores
			}
		} else {
			n.CoresPerSocket = n.CPUs
		}
	}
	// libvirt reports the architecture as the node's CPU model.
	n.CPUModel = runtime.GOARCH
	if runtime.GOARCH == "amd64" {
		n.CPUModel = "x86_64"
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				n.MemoryKiB, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
	}
	return n, nil
}

// Capabilities describes the host and the guests the engine runs.
func (c *Conn) Capabilities() (string, error) {
	ni, _ := c.NodeInfo()
	uuid := ""
	if b, err := os.ReadFile("/etc/machine-id"); err == nil {
		uuid = normUUID(strings.TrimSpace(string(b)))
	}
	var b strings.Builder
	b.WriteString("<capabilities>\n\n  <host>\n")
	if uuid != "" {
		fmt.Fprintf(&b, "    <uuid>%s</uuid>\n", uuid)
	}
	fmt.Fprintf(&b, "    <cpu>\n      <arch>x86_64</arch>\n      <topology sockets='%d' dies='1' cores='%d' threads='%d'/>\n    </cpu>\n",
		ni.SocketsPerNode, ni.CoresPerSocket, ni.ThreadsPerCore)
	b.WriteString("    <power_management/>\n    <iommu support='no'/>\n  </host>\n\n")
	b.WriteString("  <guest>\n    <os_type>hvm</os_type>\n    <arch name='x86_64'>\n      <wordsize>64</wordsize>\n")
	b.WriteString("      <domain type='kvm'/>\n    </arch>\n    <features>\n      <acpi default='on' toggle='yes'/>\n    </features>\n  </guest>\n\n</capabilities>\n")
	return b.String(), nil
}
