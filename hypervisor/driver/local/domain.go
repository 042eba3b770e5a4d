package local

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vsh/domxml"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/testdriver"
)

// runRecord is <run>/domains/<name>/state.json: what the driver knows
// about a running domain.
type runRecord struct {
	ID      int                `json:"id"`
	PID     int                `json:"pid"`
	State   driver.DomainState `json:"state"`
	Reason  driver.StateReason `json:"reason"`
	Started time.Time          `json:"started"`
	LiveXML string             `json:"live_xml"`
}

// dom is one domain as found on disk.
type dom struct {
	name      string
	def       *domxml.Domain // persistent definition; nil when transient
	live      *domxml.Domain // running definition; nil when shut off
	rec       *runRecord     // nil when shut off
	autostart bool
	offReason driver.StateReason
	cpuTime   time.Duration
	memKiB    uint64 // live balloon size from the engine; 0 unknown
}

func (d *dom) cur() *domxml.Domain {
	if d.live != nil {
		return d.live
	}
	return d.def
}

func (d *dom) active() bool { return d.rec != nil }

func (c *Conn) defPath(name string) string   { return filepath.Join(c.domDir(), name+".xml") }
func (c *Conn) runPath(name string) string   { return filepath.Join(c.runDomDir(), name) }
func (c *Conn) offPath(name string) string   { return filepath.Join(c.runDomDir(), name+".shutoff") }
func (c *Conn) renameJournal() string        { return filepath.Join(c.domDir(), ".rename") }
func (c *Conn) indexPath() string            { return filepath.Join(c.paths.State, "domains.index") }
func (c *Conn) idCounterPath() string        { return filepath.Join(c.paths.State, "next-domain-id") }
func (c *Conn) livePath(name string) string  { return filepath.Join(c.runPath(name), "live.xml") }
func (c *Conn) statePath(name string) string { return filepath.Join(c.runPath(name), "state.json") }

// validName rejects names that cannot be file names of their own.
func validName(kind, name string) error {
	if name == "" {
		return driver.Errorf(driver.ErrXML, "missing %s name", kind)
	}
	if strings.Contains(name, "/") {
		return driver.Errorf(driver.ErrXML, "name %s cannot contain '/'", name)
	}
	if name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return driver.Errorf(driver.ErrXML, "%s name '%s' cannot start with '.'", kind, name)
	}
	return nil
}

// loadDom reads a domain by exact name; (nil, nil) when there is none.
func (c *Conn) loadDom(name string) (*dom, error) {
	if validName("domain", name) != nil || name == c.renamedAway() {
		return nil, nil
	}
	d := &dom{name: name}
	data, err := os.ReadFile(c.defPath(name))
	switch {
	case err == nil:
		def, err := domxml.ParseDomain(c.defPath(name), data, false)
		if err != nil {
			return nil, driver.Errorf(driver.ErrInternal, "stored definition of domain '%s' is invalid: %v", name, err)
		}
		d.def = def
	case !errors.Is(err, fs.ErrNotExist):
		return nil, sysErr("cannot read '%s'", err, c.defPath(name))
	}
	if b, err := os.ReadFile(c.statePath(name)); err == nil {
		var rec runRecord
		if err := json.Unmarshal(b, &rec); err == nil {
			if live, err := os.ReadFile(c.livePath(name)); err == nil {
				if ld, err := domxml.ParseDomain(c.livePath(name), live, false); err == nil {
					d.live, d.rec = ld, &rec
				}
			}
		}
	}
	if d.def == nil && d.live == nil {
		return nil, nil
	}
	d.autostart = d.def != nil && hasMarker(c.domDir(), name)
	if d.rec == nil {
		d.offReason = c.readOffReason(name)
	}
	return d, nil
}

func (c *Conn) readOffReason(name string) driver.StateReason {
	b, err := os.ReadFile(c.offPath(name))
	if err != nil {
		return driver.ShutoffUnknown
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return driver.StateReason(n)
}

// refresh brings a running domain's record up to date with its VMM and
// finalizes domains whose VMM is gone. It returns false when the domain no
// longer exists (a transient domain that stopped).
func (c *Conn) refresh(d *dom) bool {
	if d.rec == nil {
		return true
	}
	var st EngineStatus
	if DefaultEngine != nil {
		s, err := DefaultEngine.Status(d.name, c.runPath(d.name))
		if err != nil {
			return true // keep the record's view; the engine may be busy
		}
		st = s
	} else {
		// No engine in this build: trust the record while its process
		// lives, and never report a dead one as running.
		st = EngineStatus{State: d.rec.State, Reason: d.rec.Reason, PID: d.rec.PID}
		if d.rec.PID <= 0 || unix.Kill(d.rec.PID, 0) == unix.ESRCH {
			st = EngineStatus{State: driver.StateShutoff, Reason: driver.ShutoffCrashed}
		}
	}
	if st.State == driver.StateShutoff {
		c.finalize(d, st.Reason)
		return d.def != nil
	}
	d.rec.State, d.rec.Reason = st.State, st.Reason
	d.cpuTime, d.memKiB = st.CPUTime, st.MemoryKiB
	return true
}

// finalize records that a domain stopped: its run directory goes, the
// shut-off reason stays for domstate --reason, and a transient domain is
// gone. Errors are ignored: a reader without write access still reports
// the right state, and the next writer finishes the job.
func (c *Conn) finalize(d *dom, reason driver.StateReason) {
	os.RemoveAll(c.runPath(d.name))
	if d.def != nil {
		writeFileAtomic(c.offPath(d.name), []byte(strconv.Itoa(int(reason))+"\n"), 0o600)
	} else {
		removeFile(c.offPath(d.name))
	}
	syncDir(c.runDomDir())
	d.rec, d.live, d.offReason = nil, nil, reason
}

func (c *Conn) info(d *dom) driver.DomainInfo {
	def := d.cur()
	_, vc := vcpus(def)
	in := driver.DomainInfo{
		ID: -1, Name: d.name, UUID: def.UUID, Title: def.Title, OSType: def.OS.Type,
		State: driver.StateShutoff, Reason: d.offReason,
		MaxMemKiB: def.MemoryKiB, MemoryKiB: def.CurrentMemoryKiB, VCPUs: vc,
		Persistent: d.def != nil, Autostart: d.autostart,
	}
	if in.OSType == "" {
		in.OSType = "hvm"
	}
	if d.rec != nil {
		in.ID, in.State, in.Reason, in.CPUTime = d.rec.ID, d.rec.State, d.rec.Reason, d.cpuTime
		if d.memKiB != 0 {
			in.MemoryKiB = d.memKiB
		}
	}
	return in
}

// indexEntry caches what listing needs from one definition file; it is
// valid while the file's inode, size and mtime are unchanged.
type indexEntry struct {
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MTimeNs int64  `json:"mtime_ns"`
	UUID    string `json:"uuid"`
	Title   string `json:"title,omitempty"`
	OSType  string `json:"os_type"`
	MaxKiB  uint64 `json:"max_kib"`
	CurKiB  uint64 `json:"cur_kib"`
	VCPUs   int    `json:"vcpus"`
}

// scanDefs returns the index entries of all persistent definitions,
// re-parsing only files that changed since the cached index was written.
func (c *Conn) scanDefs() (map[string]indexEntry, error) {
	names, err := listXML(c.domDir())
	if err != nil {
		return nil, err
	}
	old := map[string]indexEntry{}
	if b, err := os.ReadFile(c.indexPath()); err == nil {
		json.Unmarshal(b, &old)
	}
	skip := c.renamedAway()
	out := make(map[string]indexEntry, len(names))
	changed := len(old) != len(names)
	for _, name := range names {
		if name == skip {
			continue
		}
		var st unix.Stat_t
		p := c.defPath(name)
		if err := unix.Stat(p, &st); err != nil {
			continue // removed meanwhile
		}
		e, ok := old[name]
		if ok && e.Ino == st.Ino && e.Size == st.Size && e.MTimeNs == st.Mtim.Nano() {
			out[name] = e
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		def, err := domxml.ParseDomain(p, data, false)
		if err != nil {
			continue // not a definition vsh wrote; never list half a file
		}
		_, vc := vcpus(def)
		out[name] = indexEntry{Ino: st.Ino, Size: st.Size, MTimeNs: st.Mtim.Nano(), UUID: def.UUID, Title: def.Title,
			OSType: def.OS.Type, MaxKiB: def.MemoryKiB, CurKiB: def.CurrentMemoryKiB, VCPUs: vc}
		changed = true
	}
	if changed {
		if b, err := json.Marshal(out); err == nil {
			writeCache(c.indexPath(), b)
		}
	}
	return out, nil
}

// renamedAway returns the old name of an interrupted rename whose new
// definition exists (that old file is about to be removed), or "".
func (c *Conn) renamedAway() string {
	b, err := os.ReadFile(c.renameJournal())
	if err != nil {
		return ""
	}
	oldName, newName, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok {
		return ""
	}
	if _, err := os.Stat(c.defPath(newName)); err == nil {
		return oldName
	}
	return ""
}

// recover finishes what a crashed writer left: an interrupted rename and
// temporary files. Called with the exclusive lock held.
func (c *Conn) recover() {
	if old := c.renamedAway(); old != "" {
		removeFile(c.defPath(old))
		setMarker(c.domDir(), old, false)
	}
	removeFile(c.renameJournal())
	cleanTemps(c.domDir())
	cleanTemps(c.paths.State)
}

// offReasons returns the recorded shut-off reasons by domain name.
func (c *Conn) offReasons() map[string]driver.StateReason {
	out := map[string]driver.StateReason{}
	ents, err := os.ReadDir(c.runDomDir())
	if err != nil {
		return out
	}
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".shutoff"); ok && !isTemp(e.Name()) {
			out[name] = c.readOffReason(name)
		}
	}
	return out
}

// runningNames lists domains with a run directory.
func (c *Conn) runningNames() []string {
	ents, err := os.ReadDir(c.runDomDir())
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && !isTemp(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// ListDomains returns running domains by ID, then inactive ones by name.
func (c *Conn) ListDomains() ([]driver.DomainInfo, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	return c.listLocked()
}

func (c *Conn) listLocked() ([]driver.DomainInfo, error) {
	idx, err := c.scanDefs()
	if err != nil {
		return nil, err
	}
	out := make([]driver.DomainInfo, 0, len(idx))
	running := map[string]bool{}
	for _, name := range c.runningNames() {
		d, err := c.loadDom(name)
		if err != nil || d == nil || d.rec == nil {
			continue
		}
		running[name] = true
		if !c.refresh(d) {
			continue
		}
		out = append(out, c.info(d))
	}
	off := c.offReasons()
	auto := map[string]bool{}
	if ents, err := os.ReadDir(filepath.Join(c.domDir(), "autostart")); err == nil {
		for _, e := range ents {
			auto[strings.TrimSuffix(e.Name(), ".xml")] = true
		}
	}
	for name, e := range idx {
		if running[name] {
			continue
		}
		out = append(out, driver.DomainInfo{
			ID: -1, Name: name, UUID: e.UUID, Title: e.Title, OSType: osType(e.OSType),
			State: driver.StateShutoff, Reason: off[name],
			MaxMemKiB: e.MaxKiB, MemoryKiB: e.CurKiB, VCPUs: e.VCPUs,
			Persistent: true, Autostart: auto[name],
		})
	}
	testdriver.SortDomains(out)
	return out, nil
}

func osType(s string) string {
	if s == "" {
		return "hvm"
	}
	return s
}

// find resolves ref as virsh does: ID, then UUID, then name.
func (c *Conn) find(ref string) (*dom, error) {
	if id, err := strconv.Atoi(ref); err == nil && id >= 0 {
		for _, name := range c.runningNames() {
			if d, _ := c.loadDom(name); d != nil && d.rec != nil && d.rec.ID == id && c.refresh(d) && d.rec != nil {
				return d, nil
			}
		}
	}
	if u := normUUID(ref); u != "" {
		if d, err := c.findUUID(u); d != nil || err != nil {
			return d, err
		}
	}
	return c.byName(ref)
}

// byName finds a domain by exact name and refreshes its state.
func (c *Conn) byName(name string) (*dom, error) {
	d, err := c.loadDom(name)
	if err != nil {
		return nil, err
	}
	if d != nil && c.refresh(d) {
		return d, nil
	}
	return nil, driver.Errorf(driver.ErrNoDomain, "no domain with matching name '%s'", name)
}

// resolve finds the domain an operation names: by exact name first (the
// shell passes resolved names), else by ID or UUID.
func (c *Conn) resolve(name string) (*dom, error) {
	if d, err := c.loadDom(name); err != nil {
		return nil, err
	} else if d != nil && c.refresh(d) {
		return d, nil
	}
	return c.find(name)
}

func (c *Conn) findUUID(u string) (*dom, error) {
	for _, name := range c.runningNames() {
		if d, _ := c.loadDom(name); d != nil && d.cur().UUID == u && c.refresh(d) {
			return d, nil
		}
	}
	idx, err := c.scanDefs()
	if err != nil {
		return nil, err
	}
	for name, e := range idx {
		if e.UUID == u {
			d, err := c.loadDom(name)
			if d != nil && c.refresh(d) {
				return d, err
			}
		}
	}
	return nil, nil
}

// LookupDomain resolves a domain by ID, UUID or name.
func (c *Conn) LookupDomain(ref string) (driver.DomainInfo, error) {
	l, err := c.read()
	if err != nil {
		return driver.DomainInfo{}, err
	}
	defer l.unlock()
	d, err := c.find(ref)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	return c.info(d), nil
}

// checkDup applies libvirt's name/UUID rules to a new definition and
// returns the domain it replaces, if any. checkLive adds create's rules.
func (c *Conn) checkDup(def *domxml.Domain, checkLive bool) (*dom, error) {
	if err := validName("domain", def.Name); err != nil {
		return nil, err
	}
	same, err := c.loadDom(def.Name)
	if err != nil {
		return nil, err
	}
	if same != nil && !c.refresh(same) {
		same = nil
	}
	if same != nil && same.cur().UUID != def.UUID {
		return nil, driver.Errorf(driver.ErrOperationFailed, "domain '%s' already exists with uuid %s", def.Name, same.cur().UUID)
	}
	if same == nil {
		other, err := c.findUUID(def.UUID)
		if err != nil {
			return nil, err
		}
		if other != nil {
			return nil, driver.Errorf(driver.ErrOperationFailed, "domain '%s' is already defined with uuid %s", other.name, def.UUID)
		}
		return nil, nil
	}
	if checkLive {
		if same.active() {
			return nil, driver.Errorf(driver.ErrOperationInvalid, "domain '%s' is already active", def.Name)
		}
	}
	return same, nil
}

// DefineDomain defines or redefines a persistent domain.
func (c *Conn) DefineDomain(xml []byte, file string, validate bool) (driver.DomainInfo, error) {
	if err := c.writable("virDomainDefineXML"); err != nil {
		return driver.DomainInfo{}, err
	}
	def, err := parseDomain(file, xml, validate)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	l, err := c.write("virDomainDefineXML")
	if err != nil {
		return driver.DomainInfo{}, err
	}
	defer l.unlock()
	c.recover()
	d, err := c.checkDup(def, false)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	if err := writeFileAtomic(c.defPath(def.Name), def.XML(), 0o600); err != nil {
		return driver.DomainInfo{}, err
	}
	if d == nil {
		removeFile(c.offPath(def.Name))
		d = &dom{name: def.Name}
	}
	d.def = def
	return c.info(d), nil
}

// CreateDomain starts a transient domain.
func (c *Conn) CreateDomain(xml []byte, file string, validate bool, paused bool) (driver.DomainInfo, error) {
	if err := c.writable("virDomainCreateXML"); err != nil {
		return driver.DomainInfo{}, err
	}
	def, err := parseDomain(file, xml, validate)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	l, err := c.write("virDomainCreateXML")
	if err != nil {
		return driver.DomainInfo{}, err
	}
	defer l.unlock()
	d, err := c.checkDup(def, true)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	if d == nil {
		d = &dom{name: def.Name}
	}
	if err := c.boot(d, def, paused); err != nil {
		return driver.DomainInfo{}, err
	}
	return c.info(d), nil
}

// boot starts def as d's running definition through the engine.
func (c *Conn) boot(d *dom, def *domxml.Domain, paused bool) error {
	e := DefaultEngine
	if e == nil {
		return noEngine()
	}
	id, err := nextCounter(c.idCounterPath())
	if err != nil {
		return err
	}
	dir := c.runPath(d.name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sysErr("cannot create directory '%s'", err, dir)
	}
	fail := func(err error) error {
		os.RemoveAll(dir)
		return err
	}
	if err := writeFileAtomic(c.livePath(d.name), def.XML(), 0o600); err != nil {
		return fail(err)
	}
	rec := &runRecord{ID: id, State: driver.StateRunning, Reason: driver.RunningBooted, Started: time.Now().UTC(), LiveXML: c.livePath(d.name)}
	if paused {
		rec.State, rec.Reason = driver.StatePaused, driver.PausedUser
	}
	if err := c.saveRecord(d.name, rec); err != nil {
		return fail(err)
	}
	resolve := Resolver{
		Volume: func(pool, vol string) (string, string, error) {
			_, v, err := c.findVol(pool, vol)
			if err != nil {
				return "", "", err
			}
			return v.Path, v.Format, nil
		},
		NetworkBridge: func(name string) (string, error) {
			n, err := c.findNet(name)
			if err != nil {
				return "", err
			}
			if n.live == nil {
				return "", driver.Errorf(driver.ErrOperationInvalid, "network '%s' is not active", name)
			}
			return n.live.Bridge.Name, nil
		},
	}
	// The engine gets def itself, not a clone: a clone is re-parsed from
	// the rendered document, whose lines differ from the user's file once
	// FillDefaults added a uuid, and start's errors must point into the
	// file the user wrote. Engines only read it.
	pid, err := e.Start(def, dir, paused, resolve)
	if err != nil {
		return fail(err)
	}
	rec.PID = pid
	if err := c.saveRecord(d.name, rec); err != nil {
		e.Control(d.name, dir, OpDestroy)
		return fail(err)
	}
	removeFile(c.offPath(d.name))
	c.recordTaps(d.name, def)
	d.live, d.rec = def, rec
	return nil
}

func (c *Conn) saveRecord(name string, rec *runRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return driver.Errorf(driver.ErrInternal, "cannot encode state of domain '%s': %v", name, err)
	}
	return writeFileAtomic(c.statePath(name), append(b, '\n'), 0o600)
}

// UndefineDomain removes a persistent definition; a running domain keeps
// running as a transient one.
func (c *Conn) UndefineDomain(name string, flags driver.UndefineFlags) error {
	l, err := c.write("virDomainUndefineFlags")
	if err != nil {
		return err
	}
	defer l.unlock()
	c.recover()
	d, err := c.resolve(name)
	if err != nil {
		return err
	}
	if d.def == nil {
		return driver.Errorf(driver.ErrOperationInvalid, "cannot undefine transient domain")
	}
	if err := setMarker(c.domDir(), d.name, false); err != nil {
		return err
	}
	if err := removeFile(c.defPath(d.name)); err != nil {
		return err
	}
	return removeFile(c.offPath(d.name))
}

// withDom runs fn on a resolved domain under the exclusive lock.
func (c *Conn) withDom(api, name string, fn func(*dom) error) error {
	l, err := c.write(api)
	if err != nil {
		return err
	}
	defer l.unlock()
	d, err := c.resolve(name)
	if err != nil {
		return err
	}
	return fn(d)
}

// StartDomain boots an inactive persistent domain.
func (c *Conn) StartDomain(name string, paused bool) (driver.DomainInfo, error) {
	var info driver.DomainInfo
	err := c.withDom("virDomainCreateWithFlags", name, func(d *dom) error {
		if d.active() {
			return driver.Errorf(driver.ErrOperationInvalid, "domain is already running")
		}
		if err := c.boot(d, d.def.Clone(), paused); err != nil {
			return err
		}
		info = c.info(d)
		return nil
	})
	return info, err
}

func notRunning() error { return driver.Errorf(driver.ErrOperationInvalid, "domain is not running") }

// control sends op to a running domain's engine.
func (c *Conn) control(d *dom, op Op) error {
	if !d.active() {
		return notRunning()
	}
	if DefaultEngine == nil {
		return noEngine()
	}
	return DefaultEngine.Control(d.name, c.runPath(d.name), op)
}

// ShutdownDomain asks the guest to power off; the state changes when it
// has.
func (c *Conn) ShutdownDomain(name string, mode driver.ShutdownMode) error {
	api := "virDomainShutdown" // virsh calls the Flags variant only with --mode
	if mode != "" {
		api = "virDomainShutdownFlags"
	}
	return c.withDom(api, name, func(d *dom) error { return c.control(d, OpShutdown) })
}

// DestroyDomain stops a domain at once.
func (c *Conn) DestroyDomain(name string, graceful bool) error {
	api := "virDomainDestroy" // virsh calls the Flags variant only with --graceful
	if graceful {
		api = "virDomainDestroyFlags"
	}
	return c.withDom(api, name, func(d *dom) error {
		if err := c.control(d, OpDestroy); err != nil {
			return err
		}
		c.finalize(d, driver.ShutoffDestroyed)
		return nil
	})
}

// RebootDomain asks the guest to reboot.
func (c *Conn) RebootDomain(name string, mode driver.ShutdownMode) error {
	return c.withDom("virDomainReboot", name, func(d *dom) error { return c.control(d, OpReboot) })
}

// ResetDomain resets a running domain.
func (c *Conn) ResetDomain(name string) error {
	return c.withDom("virDomainReset", name, func(d *dom) error { return c.control(d, OpReset) })
}

// SuspendDomain pauses a running domain's vCPUs.
func (c *Conn) SuspendDomain(name string) error {
	return c.withDom("virDomainSuspend", name, func(d *dom) error {
		if err := c.control(d, OpPause); err != nil {
			return err
		}
		d.rec.State, d.rec.Reason = driver.StatePaused, driver.PausedUser
		return c.saveRecord(d.name, d.rec)
	})
}

// ResumeDomain restarts a paused domain's vCPUs.
func (c *Conn) ResumeDomain(name string) error {
	return c.withDom("virDomainResume", name, func(d *dom) error {
		if err := c.control(d, OpResume); err != nil {
			return err
		}
		d.rec.State, d.rec.Reason = driver.StateRunning, driver.RunningUnpaused
		return c.saveRecord(d.name, d.rec)
	})
}

// DomainXML returns the live definition (with its id) or the persistent one.
func (c *Conn) DomainXML(name string, inactive bool) ([]byte, error) {
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	d, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	if d.active() && (!inactive || d.def == nil) {
		return withID(d.live.XML(), d.rec.ID), nil
	}
	return d.def.XML(), nil
}

// SetDomainAutostart marks a persistent domain for autostart.
func (c *Conn) SetDomainAutostart(name string, on bool) error {
	return c.withDom("virDomainSetAutostart", name, func(d *dom) error {
		if d.def == nil {
			return driver.Errorf(driver.ErrOperationInvalid, "cannot set autostart for transient domain")
		}
		return setMarker(c.domDir(), d.name, on)
	})
}

// defs returns the definitions a change with scope s applies to.
func (d *dom) defs(s driver.ModifyScope) (live, config *domxml.Domain, err error) {
	l, cfg, err := testdriver.Scope(s, d.active(), d.def != nil)
	if err != nil {
		return nil, nil, err
	}
	if l {
		live = d.live
	}
	if cfg {
		config = d.def
	}
	return live, config, nil
}

// save writes the changed definitions back.
func (c *Conn) save(d *dom, live, config *domxml.Domain) error {
	if config != nil {
		if err := writeFileAtomic(c.defPath(d.name), config.XML(), 0o600); err != nil {
			return err
		}
	}
	if live != nil {
		return writeFileAtomic(c.livePath(d.name), live.XML(), 0o600)
	}
	return nil
}

func nonNil(ds ...*domxml.Domain) []*domxml.Domain {
	var out []*domxml.Domain
	for _, d := range ds {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// DomainMetadata returns the title or description ("" when unset).
func (c *Conn) DomainMetadata(name string, title bool, scope driver.ModifyScope) (string, error) {
	l, err := c.read()
	if err != nil {
		return "", err
	}
	defer l.unlock()
	d, err := c.resolve(name)
	if err != nil {
		return "", err
	}
	live, config, err := d.defs(scope)
	if err != nil {
		return "", err
	}
	if live != nil && config != nil {
		return "", driver.Errorf(driver.ErrInvalidArg, "flags 'affect live' and 'affect config' are mutually exclusive")
	}
	def := nonNil(live, config)[0]
	if title {
		return def.Title, nil
	}
	return def.Description, nil
}

// SetDomainMetadata sets the title or description.
func (c *Conn) SetDomainMetadata(name string, title bool, text string, scope driver.ModifyScope) error {
	return c.withDom("virDomainSetMetadata", name, func(d *dom) error {
		live, config, err := d.defs(scope)
		if err != nil {
			return err
		}
		if title && strings.Contains(text, "\n") {
			return driver.Errorf(driver.ErrInvalidArg, "title can't contain newlines")
		}
		for _, def := range nonNil(live, config) {
			if title {
				def.SetTitle(text)
			} else {
				def.SetDescription(text)
			}
		}
		return c.save(d, live, config)
	})
}

// RenameDomain renames an inactive persistent domain. A journal makes the
// two-file change atomic: readers and the next writer complete it.
func (c *Conn) RenameDomain(name, newName string) error {
	return c.withDom("virDomainRename", name, func(d *dom) error {
		if d.active() {
			return driver.Errorf(driver.ErrOperationInvalid, "cannot rename active domain")
		}
		if d.def == nil {
			return driver.Errorf(driver.ErrOperationInvalid, "cannot rename a transient domain")
		}
		if err := validName("domain", newName); err != nil {
			return err
		}
		if other, _ := c.loadDom(newName); other != nil {
			return driver.Errorf(driver.ErrOperationInvalid, "domain with name '%s' already exists", newName)
		}
		if err := writeFileAtomic(c.renameJournal(), []byte(d.name+"\n"+newName+"\n"), 0o600); err != nil {
			return err
		}
		d.def.SetName(newName)
		if err := writeFileAtomic(c.defPath(newName), d.def.XML(), 0o600); err != nil {
			removeFile(c.renameJournal())
			return err
		}
		if d.autostart {
			setMarker(c.domDir(), newName, true)
		}
		c.recover()
		removeFile(c.offPath(d.name))
		return nil
	})
}

// editConfig applies a memory or vCPU change; live changes need the
// engine's support, which does not exist yet.
func (c *Conn) editConfig(api, name string, scope driver.ModifyScope, fn func(defs []*domxml.Domain, live *domxml.Domain) error) error {
	return c.withDom(api, name, func(d *dom) error {
		live, config, err := d.defs(scope)
		if err != nil {
			return err
		}
		if live != nil {
			return driver.Errorf(driver.ErrOperationUnsupported, "changing a running domain is not supported by the vsh engine yet; use --config")
		}
		if err := fn(nonNil(config), d.live); err != nil {
			return err
		}
		return c.save(d, nil, config)
	})
}

// SetMemory sets the current (balloon) memory: of a running domain through
// its balloon (the guest inflates or deflates it), of the configuration
// with --config.
func (c *Conn) SetMemory(name string, kib uint64, scope driver.ModifyScope) error {
	return c.withDom("virDomainSetMemoryFlags", name, func(d *dom) error {
		live, config, err := d.defs(scope)
		if err != nil {
			return err
		}
		defs := nonNil(live, config)
		for _, def := range defs {
			if kib > def.MemoryKiB {
				return driver.Errorf(driver.ErrInvalidArg, "cannot set memory higher than max memory")
			}
		}
		if live != nil {
			de, err := deviceEngine("virDomainSetMemoryFlags")
			if err != nil {
				return err
			}
			if err := de.SetMemory(d.name, c.runPath(d.name), kib); err != nil {
				return err
			}
		}
		if err := testdriver.SetMemory(defs, kib); err != nil {
			return err
		}
		return c.save(d, live, config)
	})
}

// SetMaxMemory sets the maximum memory of the configuration.
func (c *Conn) SetMaxMemory(name string, kib uint64, scope driver.ModifyScope) error {
	return c.editConfig("virDomainSetMemoryFlags", name, scope, func(defs []*domxml.Domain, live *domxml.Domain) error {
		return testdriver.SetMaxMemory(defs, kib, live)
	})
}

// MaxVCPUs is the most vCPUs the engine gives a guest.
const MaxVCPUs = 255

// SetVCPUs sets the configuration's current or maximum vCPU count.
func (c *Conn) SetVCPUs(name string, count int, maximum bool, scope driver.ModifyScope) error {
	return c.editConfig("virDomainSetVcpusFlags", name, scope, func(defs []*domxml.Domain, live *domxml.Domain) error {
		return testdriver.SetVCPUs(defs, count, maximum, live, MaxVCPUs)
	})
}

// VCPUCount returns the configured and live vCPU counts.
func (c *Conn) VCPUCount(name string) (driver.VCPUCount, error) {
	l, err := c.read()
	if err != nil {
		return driver.VCPUCount{}, err
	}
	defer l.unlock()
	d, err := c.resolve(name)
	if err != nil {
		return driver.VCPUCount{}, err
	}
	return testdriver.CountVCPUs(d.def, d.live), nil
}

var _ driver.ConsoleOpener = (*Conn)(nil)

// Console attaches to a running domain's console through the engine.
func (c *Conn) Console(name, devname string, force bool) (io.ReadWriteCloser, error) {
	if err := c.writable("virDomainOpenConsole"); err != nil {
		return nil, err
	}
	l, err := c.read()
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	d, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	if !d.active() {
		return nil, notRunning()
	}
	ce, ok := DefaultEngine.(ConsoleEngine)
	if !ok {
		return nil, driver.Errorf(driver.ErrNoSupport, "virDomainOpenConsole")
	}
	return ce.Console(d.name, c.runPath(d.name), devname, force)
}
