// Package testdriver is the test:///default connection driver: an
// in-memory host that starts with the same objects, host facts, state
// transitions and error texts as libvirt's test driver, so scripts written
// against `virsh -c test:///default` give the same output with vsh.
//
// State lives in the process: connections opened while another one is open
// share it (as libvirt's shared default connection does); once the last one
// closes, the next Open starts from the default host again.
package testdriver

import (
	_ "embed"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// URI is the only URI this driver serves.
const URI = "test:///default"

func init() { driver.Register("test", Open) }

//go:embed capabilities.xml
var capabilities string

// shared is the state behind all open test:///default connections.
var shared struct {
	mu    sync.Mutex
	refs  int
	state *host
}

// Open connects to test:///default.
func Open(uri string, readOnly bool) (driver.Conn, error) {
	if uri != URI && uri != "test:///default/" {
		return nil, driver.Errorf(driver.ErrNoConnect, "no connection driver available for %s", uri)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.state == nil {
		h, err := newDefaultHost()
		if err != nil {
			return nil, err
		}
		shared.state = h
	}
	shared.refs++
	return &Conn{h: shared.state, readOnly: readOnly}, nil
}

// Conn is a connection to the in-memory test host.
type Conn struct {
	h        *host
	readOnly bool
	closed   bool
}

var _ driver.Conn = (*Conn)(nil)

// host is the test driver's whole state, guarded by mu.
type host struct {
	mu        sync.Mutex
	nextDomID int
	doms      []*domain
	nets      []*network
	pools     []*pool
}

type domain struct {
	def       *domxml.Domain // persistent definition; nil for a transient domain
	live      *domxml.Domain // running definition; nil when shut off
	id        int
	state     driver.DomainState
	reason    driver.StateReason
	autostart bool
}

func (d *domain) cur() *domxml.Domain {
	if d.live != nil {
		return d.live
	}
	return d.def
}

func (d *domain) active() bool { return d.live != nil }

type network struct {
	def       *domxml.Network // persistent definition; nil when transient
	live      *domxml.Network // active definition; nil when inactive
	autostart bool
}

func (n *network) cur() *domxml.Network {
	if n.live != nil {
		return n.live
	}
	return n.def
}

type pool struct {
	def       *domxml.Pool
	persist   bool
	active    bool
	autostart bool
	vols      []*volume
}

type volume struct {
	def  *domxml.Volume
	path string
}

// Default sizes of the test driver's pools (libvirt's defaultPoolCap and
// defaultPoolAlloc).
const (
	defaultPoolCap   = 100 << 30
	defaultPoolAlloc = 0
)

const defaultDomainXML = `<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/diskimage1'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='aa:bb:cc:dd:ee:ff'/>
      <source network='default'/>
      <target dev='testnet0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </memballoon>
  </devices>
</domain>
`

const defaultNetworkXML = `<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`

const defaultPoolXML = `<pool type='dir'>
  <name>default-pool</name>
  <uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
  <capacity unit='bytes'>107374182400</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>107374182400</available>
  <source>
  </source>
  <target>
    <path>/default-pool</path>
  </target>
</pool>
`

// newDefaultHost builds libvirt's default test host: domain "test" running
// with id 1, network "default" and pool "default-pool", both active.
func newDefaultHost() (*host, error) {
	d, err := parseDomain("(test driver default domain)", []byte(defaultDomainXML), false)
	if err != nil {
		return nil, err
	}
	n, err := parseNetwork("(test driver default network)", []byte(defaultNetworkXML), false)
	if err != nil {
		return nil, err
	}
	p, err := parsePool("(test driver default pool)", []byte(defaultPoolXML), false)
	if err != nil {
		return nil, err
	}
	h := &host{nextDomID: 1}
	h.doms = append(h.doms, &domain{def: d, live: d.Clone(), id: h.allocID(), state: driver.StateRunning, reason: driver.RunningUnknown})
	h.nets = append(h.nets, &network{def: n, live: n.Clone()})
	h.pools = append(h.pools, &pool{def: p, persist: true, active: true})
	return h, nil
}

func (h *host) allocID() int {
	id := h.nextDomID
	h.nextDomID++
	return id
}

// Close releases the connection; the last close forgets the state.
func (c *Conn) Close() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	shared.refs--
	if shared.refs == 0 {
		shared.state = nil
	}
	return nil
}

// writable refuses mutations on read-only connections.
func (c *Conn) writable(api string) error {
	if c.readOnly {
		return driver.Errorf(driver.ErrOperationForbidden, "read only access prevents %s", api)
	}
	return nil
}

// lock takes the host lock and refuses mutations on read-only connections;
// api names the libvirt call for the error text.
func (c *Conn) lock(api string) (func(), error) {
	if api != "" {
		if err := c.writable(api); err != nil {
			return nil, err
		}
	}
	c.h.mu.Lock()
	return c.h.mu.Unlock, nil
}

// editDomain runs edit, under the host lock, on the definitions of domain
// name that scope selects; api names the call, which a read-only
// connection refuses.
func (c *Conn) editDomain(api, name string, scope driver.ModifyScope, edit func(d *domain, defs []*domxml.Domain) error) error {
	unlock, err := c.lock(api)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	defs, err := d.defs(scope)
	if err != nil {
		return err
	}
	return edit(d, defs)
}

// ---- Host ----

// URI returns test:///default.
func (c *Conn) URI() string { return URI }

// ReadOnly reports whether the connection refuses mutations.
func (c *Conn) ReadOnly() bool { return c.readOnly }

// Hostname returns the machine's host name, as libvirt's test driver does.
func (c *Conn) Hostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", &driver.Error{Code: driver.ErrSystem, Detail: err.Error(), Err: err}
	}
	return h, nil
}

// HypervisorVersion returns "TEST" 0.0.2.
func (c *Conn) HypervisorVersion() (string, uint64, error) { return "TEST", 2, nil }

// NodeInfo returns the test host's fixed node information.
func (c *Conn) NodeInfo() (driver.NodeInfo, error) {
	return driver.NodeInfo{CPUModel: "i686", CPUs: 16, MHz: 1400, NUMANodes: 2, SocketsPerNode: 2,
		CoresPerSocket: 2, ThreadsPerCore: 2, MemoryKiB: 3145728}, nil
}

// Capabilities returns the test host's capabilities document.
func (c *Conn) Capabilities() (string, error) { return capabilities, nil }

// ---- Domains ----

func (h *host) info(d *domain) driver.DomainInfo {
	def := d.cur()
	_, cur := vcpus(def)
	label := "" // libvirt's test driver labels running domains only
	if d.id >= 0 {
		label = "libvirt-test (enforcing)"
	}
	return driver.DomainInfo{
		ID:            d.id,
		Name:          def.Name,
		UUID:          def.UUID,
		Title:         def.Title,
		OSType:        "linux",
		State:         d.state,
		Reason:        d.reason,
		MaxMemKiB:     def.MemoryKiB,
		MemoryKiB:     def.CurrentMemoryKiB,
		VCPUs:         cur,
		CPUTime:       time.Duration(time.Now().UnixNano()),
		Persistent:    d.def != nil,
		Autostart:     d.autostart,
		SecurityModel: "testSecurity",
		SecurityLabel: label,
	}
}

// ListDomains returns running domains by ID, then inactive ones by name.
func (c *Conn) ListDomains() ([]driver.DomainInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	out := make([]driver.DomainInfo, 0, len(c.h.doms))
	for _, d := range c.h.doms {
		out = append(out, c.h.info(d))
	}
	SortDomains(out)
	return out, nil
}

// SortDomains orders domains as virsh list prints them: running ones by
// ID, then inactive ones by name.
func SortDomains(ds []driver.DomainInfo) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.Active() != b.Active() {
			return a.Active()
		}
		if a.Active() {
			return a.ID < b.ID
		}
		return a.Name < b.Name
	})
}

// find resolves ref as virsh does: ID, then UUID, then name.
func (h *host) find(ref string) (*domain, error) {
	if id, err := strconv.Atoi(ref); err == nil && id >= 0 {
		for _, d := range h.doms {
			if d.active() && d.id == id {
				return d, nil
			}
		}
	}
	if u := normUUID(ref); u != "" {
		for _, d := range h.doms {
			if d.cur().UUID == u {
				return d, nil
			}
		}
	}
	for _, d := range h.doms {
		if d.cur().Name == ref {
			return d, nil
		}
	}
	return nil, driver.Errorf(driver.ErrNoDomain, "no domain with matching name '%s'", ref)
}

// byName finds the domain an operation names: by exact name first (the
// shell passes resolved names), else by ID or UUID.
func (h *host) byName(name string) (*domain, error) {
	for _, d := range h.doms {
		if d.cur().Name == name {
			return d, nil
		}
	}
	return h.find(name)
}

func (h *host) remove(d *domain) {
	for i, x := range h.doms {
		if x == d {
			h.doms = append(h.doms[:i], h.doms[i+1:]...)
			return
		}
	}
}

// LookupDomain resolves a domain by ID, UUID or name.
func (c *Conn) LookupDomain(ref string) (driver.DomainInfo, error) {
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.h.find(ref)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	return c.h.info(d), nil
}

// checkDup applies libvirt's name/UUID uniqueness rules for a new
// definition and returns the existing domain it replaces, if any.
// checkLive adds create's rules (the domain must not be running).
func (h *host) checkDup(def *domxml.Domain, checkLive bool) (*domain, error) {
	if strings.Contains(def.Name, "/") {
		return nil, driver.Errorf(driver.ErrXML, "name %s cannot contain '/'", def.Name)
	}
	for _, d := range h.doms {
		cur := d.cur()
		if cur.UUID != def.UUID {
			continue
		}
		if cur.Name != def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "domain '%s' is already defined with uuid %s", cur.Name, cur.UUID)
		}
		if checkLive {
			if d.active() {
				return nil, driver.Errorf(driver.ErrOperationInvalid, "domain '%s' is already active", cur.Name)
			}
			if d.def == nil {
				return nil, driver.Errorf(driver.ErrOperationInvalid, "domain '%s' is already being started", cur.Name)
			}
		}
		return d, nil
	}
	for _, d := range h.doms {
		if cur := d.cur(); cur.Name == def.Name {
			return nil, driver.Errorf(driver.ErrOperationFailed, "domain '%s' already exists with uuid %s", cur.Name, cur.UUID)
		}
	}
	return nil, nil
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
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.h.checkDup(def, false)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	if d == nil {
		d = &domain{id: -1, state: driver.StateShutoff, reason: driver.ShutoffUnknown}
		c.h.doms = append(c.h.doms, d)
	}
	d.def = def
	return c.h.info(d), nil
}

// CreateDomain starts a transient domain (or boots an inactive persistent
// domain of the same name and UUID with this definition).
func (c *Conn) CreateDomain(xml []byte, file string, validate bool, paused bool) (driver.DomainInfo, error) {
	if err := c.writable("virDomainCreateXML"); err != nil {
		return driver.DomainInfo{}, err
	}
	def, err := parseDomain(file, xml, validate)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.h.checkDup(def, true)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	if d == nil {
		d = &domain{}
		c.h.doms = append(c.h.doms, d)
	}
	d.live = def
	c.h.boot(d, paused)
	return c.h.info(d), nil
}

func (h *host) boot(d *domain, paused bool) {
	if d.live != nil {
		nameInterfaces(d.live)
	}
	d.id = h.allocID()
	d.state, d.reason = driver.StateRunning, driver.RunningBooted
	if paused {
		d.state, d.reason = driver.StatePaused, driver.PausedUser
	}
}

// stop shuts a domain off; a transient domain disappears.
func (h *host) stop(d *domain, reason driver.StateReason) {
	d.live = nil
	d.id = -1
	d.state, d.reason = driver.StateShutoff, reason
	if d.def == nil {
		h.remove(d)
	}
}

// UndefineDomain removes a persistent definition; a running domain stays,
// as a transient one.
func (c *Conn) UndefineDomain(name string, flags driver.UndefineFlags) error {
	unlock, err := c.lock("virDomainUndefineFlags")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	// libvirt's test driver accepts undefine of a transient domain (it
	// stays as it is) and keeps the autostart flag.
	if d.active() {
		d.def = nil
		return nil
	}
	c.h.remove(d)
	return nil
}

// StartDomain boots an inactive persistent domain.
func (c *Conn) StartDomain(name string, paused bool) (driver.DomainInfo, error) {
	unlock, err := c.lock("virDomainCreateWithFlags")
	if err != nil {
		return driver.DomainInfo{}, err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return driver.DomainInfo{}, err
	}
	if paused {
		// libvirt's test driver accepts no flags here.
		return driver.DomainInfo{}, driver.Errorf(driver.ErrSystem, "unsupported flags (0x1) in function testDomainCreateWithFlags")
	}
	if d.active() {
		return driver.DomainInfo{}, driver.Errorf(driver.ErrOperationInvalid, "Domain '%s' is already running", d.cur().Name)
	}
	d.live = d.def.Clone()
	c.h.boot(d, false)
	return c.h.info(d), nil
}

func notRunning() error {
	return driver.Errorf(driver.ErrOperationInvalid, "domain is not running")
}

// ShutdownDomain powers a domain off at once (the test host's guests
// always cooperate).
func (c *Conn) ShutdownDomain(name string, mode driver.ShutdownMode) error {
	api := "virDomainShutdown" // virsh calls the Flags variant only with --mode
	if mode != "" {
		api = "virDomainShutdownFlags"
	}
	unlock, err := c.lock(api)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if d.state == driver.StateShutoff {
		return driver.Errorf(driver.ErrInternal, "domain '%s' not running", d.cur().Name)
	}
	c.h.stop(d, driver.ShutoffShutdown)
	return nil
}

// DestroyDomain stops a domain at once.
func (c *Conn) DestroyDomain(name string, graceful bool) error {
	api := "virDomainDestroy" // virsh calls the Flags variant only with --graceful
	if graceful {
		api = "virDomainDestroyFlags"
	}
	unlock, err := c.lock(api)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if !d.active() {
		return notRunning()
	}
	c.h.stop(d, driver.ShutoffDestroyed)
	return nil
}

// RebootDomain restarts a running domain; it keeps its ID.
func (c *Conn) RebootDomain(name string, mode driver.ShutdownMode) error {
	unlock, err := c.lock("virDomainReboot")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if !d.active() {
		return notRunning()
	}
	d.state, d.reason = driver.StateRunning, driver.RunningBooted
	return nil
}

// ResetDomain resets a running domain; its state does not change.
func (c *Conn) ResetDomain(name string) error {
	unlock, err := c.lock("virDomainReset")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if !d.active() {
		return notRunning()
	}
	return nil
}

// SuspendDomain pauses a running domain.
func (c *Conn) SuspendDomain(name string) error {
	unlock, err := c.lock("virDomainSuspend")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if d.state == driver.StateShutoff || d.state == driver.StatePaused {
		return driver.Errorf(driver.ErrInternal, "domain '%s' not running", d.cur().Name)
	}
	d.state, d.reason = driver.StatePaused, driver.PausedUser
	return nil
}

// ResumeDomain unpauses a paused domain.
func (c *Conn) ResumeDomain(name string) error {
	unlock, err := c.lock("virDomainResume")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if d.state != driver.StatePaused {
		return driver.Errorf(driver.ErrInternal, "domain '%s' not paused", d.cur().Name)
	}
	d.state, d.reason = driver.StateRunning, driver.RunningUnpaused
	return nil
}

// DomainXML returns the live definition (with its id) or the persistent one.
func (c *Conn) DomainXML(name string, inactive bool) ([]byte, error) {
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return nil, err
	}
	if d.active() && (!inactive || d.def == nil) {
		return withID(d.live.XML(), d.id), nil
	}
	return d.def.XML(), nil
}

// SetDomainAutostart marks a persistent domain for autostart.
func (c *Conn) SetDomainAutostart(name string, on bool) error {
	unlock, err := c.lock("virDomainSetAutostart")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	// libvirt's test driver sets the flag on transient domains too.
	d.autostart = on
	return nil
}

// Scope resolves --live/--config/--current for a domain: neither flag
// means the live definition when running, else the persistent one.
func Scope(s driver.ModifyScope, active, persistent bool) (live, config bool, err error) {
	live, config = s.Live, s.Config
	if !live && !config {
		if active {
			live = true
		} else {
			config = true
		}
	}
	if live && !active {
		return false, false, notRunning()
	}
	if config && !persistent {
		return false, false, driver.Errorf(driver.ErrOperationInvalid, "transient domains do not have any persistent config")
	}
	return live, config, nil
}

// defs returns the definitions a change with scope s applies to.
func (d *domain) defs(s driver.ModifyScope) ([]*domxml.Domain, error) {
	live, config, err := Scope(s, d.active(), d.def != nil)
	if err != nil {
		return nil, err
	}
	var out []*domxml.Domain
	if live {
		out = append(out, d.live)
	}
	if config {
		out = append(out, d.def)
	}
	return out, nil
}

// DomainMetadata returns the title or description ("" when unset).
func (c *Conn) DomainMetadata(name string, title bool, scope driver.ModifyScope) (string, error) {
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return "", err
	}
	defs, err := d.defs(scope)
	if err != nil {
		return "", err
	}
	if len(defs) > 1 {
		return "", driver.Errorf(driver.ErrInvalidArg, "flags 'affect live' and 'affect config' are mutually exclusive")
	}
	if title {
		return defs[0].Title, nil
	}
	return defs[0].Description, nil
}

// SetDomainMetadata sets the title or description.
func (c *Conn) SetDomainMetadata(name string, title bool, text string, scope driver.ModifyScope) error {
	return c.editDomain("virDomainSetMetadata", name, scope, func(_ *domain, defs []*domxml.Domain) error {
		return setMetadata(defs, title, text)
	})
}

func setMetadata(defs []*domxml.Domain, title bool, text string) error {
	if title {
		for i := 0; i < len(text); i++ {
			if text[i] == '\n' {
				return driver.Errorf(driver.ErrInvalidArg, "title can't contain newlines")
			}
		}
	}
	for _, def := range defs {
		if title {
			def.SetTitle(text)
		} else {
			def.SetDescription(text)
		}
	}
	return nil
}

// RenameDomain renames an inactive persistent domain.
func (c *Conn) RenameDomain(name, newName string) error {
	unlock, err := c.lock("virDomainRename")
	if err != nil {
		return err
	}
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return err
	}
	if d.active() {
		return driver.Errorf(driver.ErrOperationInvalid, "cannot rename active domain")
	}
	if d.def == nil {
		return driver.Errorf(driver.ErrOperationInvalid, "cannot rename a transient domain")
	}
	if err := checkName(newName); err != nil {
		return err
	}
	for _, x := range c.h.doms {
		if x != d && x.cur().Name == newName {
			return driver.Errorf(driver.ErrOperationInvalid, "domain with name '%s' already exists", newName)
		}
	}
	d.def.SetName(newName)
	return nil
}

// checkName applies libvirt's rule for object names.
func checkName(name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return driver.Errorf(driver.ErrXML, "name %s cannot contain '/'", name)
		}
	}
	if name == "" {
		return driver.Errorf(driver.ErrInvalidArg, "new domain name must not be empty")
	}
	return nil
}

// SetMemory sets the current (balloon) memory.
func (c *Conn) SetMemory(name string, kib uint64, scope driver.ModifyScope) error {
	return c.editDomain("virDomainSetMemoryFlags", name, scope, func(_ *domain, defs []*domxml.Domain) error {
		return SetMemory(defs, kib)
	})
}

// SetMemory applies setmem to definitions: the balloon target cannot
// exceed the maximum.
func SetMemory(defs []*domxml.Domain, kib uint64) error {
	for _, def := range defs {
		if kib > def.MemoryKiB {
			return driver.Errorf(driver.ErrInvalidArg, "cannot set memory higher than max memory")
		}
	}
	for _, def := range defs {
		def.SetCurrentMemoryKiB(kib)
	}
	return nil
}

// SetMaxMemory sets the maximum memory (<memory>) of the configuration.
func (c *Conn) SetMaxMemory(name string, kib uint64, scope driver.ModifyScope) error {
	return c.editDomain("virDomainSetMemoryFlags", name, scope, func(d *domain, defs []*domxml.Domain) error {
		return SetMaxMemory(defs, kib, d.live)
	})
}

// SetMaxMemory applies setmaxmem to definitions; live is the running
// definition, whose maximum cannot change.
func SetMaxMemory(defs []*domxml.Domain, kib uint64, live *domxml.Domain) error {
	for _, def := range defs {
		if def == live {
			return driver.Errorf(driver.ErrOperationInvalid, "cannot resize the maximum memory on an active domain")
		}
	}
	if kib == 0 {
		return driver.Errorf(driver.ErrInvalidArg, "memory size must be greater than zero")
	}
	for _, def := range defs {
		def.SetMemoryKiB(kib)
		if def.CurrentMemoryKiB > kib {
			def.SetCurrentMemoryKiB(kib)
		}
	}
	return nil
}

// maxVCPUs is the test connection's vCPU limit (testConnectGetMaxVcpus).
const maxVCPUs = 32

// SetVCPUs sets the current or maximum vCPU count.
func (c *Conn) SetVCPUs(name string, count int, maximum bool, scope driver.ModifyScope) error {
	return c.editDomain("virDomainSetVcpusFlags", name, scope, func(d *domain, defs []*domxml.Domain) error {
		return SetVCPUs(defs, count, maximum, d.live, maxVCPUs)
	})
}

// SetVCPUs applies setvcpus to definitions with libvirt's checks; live is
// the running definition (its maximum is fixed), limit the host's maximum.
func SetVCPUs(defs []*domxml.Domain, count int, maximum bool, live *domxml.Domain, limit int) error {
	if count <= 0 {
		return driver.Errorf(driver.ErrInvalidArg, "argument unsupported: zero vCPUs")
	}
	if count > limit {
		return driver.Errorf(driver.ErrInvalidArg, "requested cpu amount exceeds maximum supported amount (%d > %d)", count, limit)
	}
	for _, def := range defs {
		max, _ := vcpus(def)
		if maximum && def == live {
			return driver.Errorf(driver.ErrInvalidArg, "cannot change the maximum vcpu count of a running domain")
		}
		if !maximum && count > max {
			return driver.Errorf(driver.ErrInvalidArg, "requested cpu amount exceeds maximum (%d > %d)", count, max)
		}
	}
	for _, def := range defs {
		max, cur := vcpus(def)
		if maximum {
			max = count
			if cur > max {
				cur = max
			}
		} else {
			cur = count
		}
		def.SetVCPUs(max, cur)
	}
	return nil
}

// VCPUCount returns the configured and live vCPU counts.
func (c *Conn) VCPUCount(name string) (driver.VCPUCount, error) {
	unlock, _ := c.lock("")
	defer unlock()
	d, err := c.h.byName(name)
	if err != nil {
		return driver.VCPUCount{}, err
	}
	return CountVCPUs(d.def, d.live), nil
}

// CountVCPUs fills a VCPUCount from a persistent and a live definition
// (either may be nil).
func CountVCPUs(config, live *domxml.Domain) driver.VCPUCount {
	n := driver.VCPUCount{MaxConfig: -1, MaxLive: -1, CurrentConfig: -1, CurrentLive: -1}
	if config == nil {
		config = live
	}
	n.MaxConfig, n.CurrentConfig = vcpus(config)
	if live != nil {
		n.MaxLive, n.CurrentLive = vcpus(live)
	}
	return n
}
