package local

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/driver"
)

func vmXML(name string) string {
	return "<domain type='kvm'>\n  <name>" + name + "</name>\n  <memory unit='KiB'>65536</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64'>hvm</type>\n  </os>\n</domain>\n"
}

func mustDo(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t testing.TB, what string, err error, text string) {
	t.Helper()
	if err == nil || err.Error() != text {
		t.Fatalf("%s: error %v, want %q", what, err, text)
	}
}

func TestNoEngine(t *testing.T) {
	DefaultEngine = nil
	c := openTemp(t)
	_, err := c.DefineDomain([]byte(vmXML("vm1")), "vm1.xml", false)
	mustDo(t, "define", err)
	_, err = c.StartDomain("vm1", false)
	wantErr(t, "start", err, "unsupported configuration: the vsh KVM engine is not available in this build")
	_, err = c.CreateDomain([]byte(vmXML("vm2")), "vm2.xml", false, false)
	wantErr(t, "create", err, "unsupported configuration: the vsh KVM engine is not available in this build")
	d, err := c.LookupDomain("vm1")
	if err != nil || d.Active() || d.State != driver.StateShutoff {
		t.Fatalf("after failed start: %+v %v", d, err)
	}
	if _, err := c.LookupDomain("vm2"); driver.Code(err) != driver.ErrNoDomain {
		t.Fatalf("failed create left a domain: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(os.Getenv("VSH_HOME"), "run", "domains"))
	if len(ents) != 0 {
		t.Errorf("run directory not clean: %v", ents)
	}
	wantErr(t, "shutdown", c.ShutdownDomain("vm1", ""), "Requested operation is not valid: domain is not running")
	wantErr(t, "suspend", c.SuspendDomain("vm1"), "Requested operation is not valid: domain is not running")
}

func TestLifecycleWithEngine(t *testing.T) {
	e := newProcEngine()
	DefaultEngine = e
	defer func() { DefaultEngine = nil }()
	c := openTemp(t)
	_, err := c.DefineDomain([]byte(vmXML("vm1")), "vm1.xml", false)
	mustDo(t, "define", err)
	d, err := c.StartDomain("vm1", false)
	mustDo(t, "start", err)
	if d.ID != 1 || d.State != driver.StateRunning || d.Reason != driver.RunningBooted {
		t.Fatalf("started: %+v", d)
	}
	_, err = c.StartDomain("vm1", false)
	wantErr(t, "start again", err, "Requested operation is not valid: domain is already running")
	if got, _ := c.LookupDomain("1"); got.Name != "vm1" {
		t.Fatalf("lookup by ID: %+v", got)
	}
	x, _ := c.DomainXML("vm1", false)
	if !strings.HasPrefix(string(x), "<domain type='kvm' id='1'>") {
		t.Errorf("live XML: %.50s", x)
	}
	// setmem on a running domain goes to its balloon (devices_test.go's
	// procEngine) and the running definition.
	mustDo(t, "setmem live", c.SetMemory("vm1", 32768, driver.ModifyScope{}))
	if got, _ := c.LookupDomain("vm1"); got.MemoryKiB != 32768 {
		t.Errorf("memory after setmem live: %+v", got)
	}
	if x, _ := c.DomainXML("vm1", true); strings.Contains(string(x), "32768") {
		t.Errorf("setmem live changed the configuration:\n%s", x)
	}
	mustDo(t, "setmem config", c.SetMemory("vm1", 32768, driver.ModifyScope{Config: true}))
	_, err = c.DefineDomain([]byte(strings.Replace(vmXML("vm1"), "<name>vm1</name>", "<name>vm1</name><uuid>"+d.UUID+"</uuid><title>new</title>", 1)), "vm1.xml", false)
	mustDo(t, "redefine running", err)
	if got, _ := c.LookupDomain("vm1"); got.Title != "" || got.ID != 1 {
		t.Errorf("redefine changed the running domain: %+v", got)
	}
	if x, _ := c.DomainXML("vm1", true); !strings.Contains(string(x), "<title>new</title>") {
		t.Errorf("inactive XML after redefine:\n%s", x)
	}
	mustDo(t, "suspend", c.SuspendDomain("vm1"))
	if got, _ := c.LookupDomain("vm1"); got.State != driver.StatePaused || got.Reason != driver.PausedUser {
		t.Errorf("paused: %+v", got)
	}
	mustDo(t, "resume", c.ResumeDomain("vm1"))
	mustDo(t, "shutdown", c.ShutdownDomain("vm1", ""))
	got := waitState(t, c, "vm1", driver.StateShutoff)
	if got.Reason != driver.ShutoffShutdown || got.ID != -1 {
		t.Errorf("after shutdown: %+v", got)
	}
	d, err = c.StartDomain("vm1", false)
	mustDo(t, "start 2", err)
	if d.ID != 2 || d.Title != "new" {
		t.Errorf("second start: %+v, want ID 2 and the redefined title", d)
	}
	// Undefine while running makes it transient; destroy then removes it.
	mustDo(t, "undefine running", c.UndefineDomain("vm1", driver.UndefineFlags{}))
	if got, _ := c.LookupDomain("vm1"); got.Persistent || !got.Active() {
		t.Fatalf("undefined running domain: %+v", got)
	}
	mustDo(t, "destroy", c.DestroyDomain("vm1", false))
	if _, err := c.LookupDomain("vm1"); driver.Code(err) != driver.ErrNoDomain {
		t.Fatalf("transient domain survived destroy: %v", err)
	}

	// A VMM killed behind the driver's back reads as crashed, never running.
	_, err = c.DefineDomain([]byte(vmXML("vm3")), "vm3.xml", false)
	mustDo(t, "define vm3", err)
	d, err = c.StartDomain("vm3", false)
	mustDo(t, "start vm3", err)
	pid := e.pid(filepath.Join(os.Getenv("VSH_HOME"), "run", "domains", "vm3"))
	unix.Kill(pid, unix.SIGKILL)
	got = waitState(t, c, "vm3", driver.StateShutoff)
	if got.Reason != driver.ShutoffCrashed {
		t.Errorf("killed VMM: %+v", got)
	}
	// Transient create.
	d, err = c.CreateDomain([]byte(vmXML("tvm")), "tvm.xml", false, false)
	mustDo(t, "create", err)
	if d.Persistent || d.ID != 4 {
		t.Errorf("created: %+v", d)
	}
	_, err = c.CreateDomain([]byte(strings.Replace(vmXML("tvm"), "<name>tvm</name>", "<name>tvm</name><uuid>"+d.UUID+"</uuid>", 1)), "tvm.xml", false, false)
	wantErr(t, "create again", err, "Requested operation is not valid: domain 'tvm' is already active")
	mustDo(t, "destroy tvm", c.DestroyDomain("tvm", false))
	list, _ := c.ListDomains()
	if len(list) != 1 || list[0].Name != "vm3" {
		t.Errorf("left: %+v", list)
	}
}

func TestLayoutAndPersistence(t *testing.T) {
	c := openTemp(t)
	home := os.Getenv("VSH_HOME")
	_, err := c.DefineDomain([]byte(vmXML("vm1")), "vm1.xml", false)
	mustDo(t, "define", err)
	mustDo(t, "autostart", c.SetDomainAutostart("vm1", true))
	def := filepath.Join(home, "etc", "domains", "vm1.xml")
	b, err := os.ReadFile(def)
	if err != nil || !bytes.Contains(b, []byte("<uuid>")) {
		t.Fatalf("definition file: %v\n%s", err, b)
	}
	if target, err := os.Readlink(filepath.Join(home, "etc", "domains", "autostart", "vm1.xml")); err != nil || target != "../vm1.xml" {
		t.Errorf("autostart link: %q %v", target, err)
	}
	if st, _ := os.Stat(def); st.Mode().Perm() != 0o600 {
		t.Errorf("definition mode %v", st.Mode())
	}
	// A second connection (another shell) sees the same state.
	c2, err := driver.Open("vsh:///session", false)
	mustDo(t, "open 2", err)
	d, err := c2.LookupDomain("vm1")
	if err != nil || !d.Autostart || !d.Persistent {
		t.Fatalf("second connection: %+v %v", d, err)
	}
	// A user's file keeps its layout: only what vsh changed differs.
	user := "<domain type='kvm'>\n  <!-- mine -->\n  <name>vm2</name>\n  <memory unit='KiB'>65536</memory>\n  <os><type>hvm</type></os>\n</domain>\n"
	_, err = c.DefineDomain([]byte(user), "vm2.xml", false)
	mustDo(t, "define vm2", err)
	x, _ := c.DomainXML("vm2", true)
	if !strings.Contains(string(x), "<!-- mine -->") {
		t.Errorf("comment lost:\n%s", x)
	}
	// Read-only connections read and refuse changes.
	ro, err := driver.Open("vsh:///session", true)
	mustDo(t, "open ro", err)
	if _, err := ro.ListDomains(); err != nil {
		t.Errorf("read-only list: %v", err)
	}
	wantErr(t, "ro undefine", ro.UndefineDomain("vm1", driver.UndefineFlags{}), "operation forbidden: read only access prevents virDomainUndefineFlags")
	// A stray temporary file is neither a definition nor kept.
	os.WriteFile(filepath.Join(home, "etc", "domains", ".vm9.xml.abc.tmp"), []byte("<domain"), 0o600)
	list, _ := c.ListDomains()
	if len(list) != 2 {
		t.Errorf("list with temp file: %+v", list)
	}
	_, err = c.DefineDomain([]byte(vmXML("vm3")), "vm3.xml", false)
	mustDo(t, "define vm3", err)
	if _, err := os.Stat(filepath.Join(home, "etc", "domains", ".vm9.xml.abc.tmp")); err == nil {
		t.Errorf("temp file not cleaned")
	}
}

func TestDefaultNetwork(t *testing.T) {
	home := t.TempDir()
	t.Setenv("VSH_HOME", home)
	c, err := driver.Open("vsh:///system", false)
	mustDo(t, "open", err)
	n, err := c.LookupNetwork("default")
	if err != nil || n.Bridge != "vshbr0" || !n.Autostart || n.Active || !n.Persistent {
		t.Fatalf("default network: %+v %v", n, err)
	}
	x, _ := c.NetworkXML("default", false)
	if !strings.Contains(string(x), "192.168.122.1") || !strings.Contains(string(x), "<uuid>") {
		t.Errorf("default network XML:\n%s", x)
	}
	wantErr(t, "start", c.StartNetwork("default"), "unsupported configuration: the vsh network backend is not available in this build")
	// New networks get a free bridge name.
	n2, err := c.DefineNetwork([]byte("<network><name>n2</name><forward mode='nat'/><ip address='10.9.0.1' netmask='255.255.255.0'/></network>"), "n2.xml", false)
	mustDo(t, "define n2", err)
	if n2.Bridge != "vshbr1" {
		t.Errorf("n2 bridge %q", n2.Bridge)
	}
	mustDo(t, "undefine", c.UndefineNetwork("default"))
	c2, err := driver.Open("vsh:///system", false)
	mustDo(t, "reopen", err)
	if _, err := c2.LookupNetwork("default"); driver.Code(err) != driver.ErrNoNetwork {
		t.Errorf("default network came back after undefine: %v", err)
	}
	// The session connection has none.
	s, _ := driver.Open("vsh:///session", false)
	if nets, _ := s.ListNetworks(); len(nets) != 1 {
		t.Errorf("session networks: %+v", nets)
	}
}

func TestDirPoolVolumes(t *testing.T) {
	c := openTemp(t)
	dir := filepath.Join(t.TempDir(), "pool")
	_, err := c.DefinePool([]byte("<pool type='dir'><name>p</name><target><path>"+dir+"</path></target></pool>"), "p.xml", false)
	mustDo(t, "define", err)
	err = c.StartPool("p")
	if err == nil || !strings.Contains(err.Error(), "cannot open directory '"+dir+"': No such file or directory") {
		t.Fatalf("start without build: %v", err)
	}
	mustDo(t, "build", c.BuildPool("p", driver.PoolBuildFlags{}))
	mustDo(t, "start", c.StartPool("p"))
	wantErr(t, "start again", c.StartPool("p"), "Requested operation is not valid: storage pool 'p' is already active")
	info, _ := c.LookupPool("p")
	var st unix.Statfs_t
	unix.Statfs(dir, &st)
	if info.CapacityBytes != st.Blocks*uint64(st.Frsize) || info.State != driver.PoolRunning {
		t.Errorf("pool info: %+v", info)
	}

	// Sparse by default; allocated when asked.
	sparse, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "sparse.img", CapacityBytes: 1 << 30})
	mustDo(t, "create sparse", err)
	if sparse.CapacityBytes != 1<<30 || sparse.AllocationBytes > 1<<20 || sparse.Path != filepath.Join(dir, "sparse.img") {
		t.Errorf("sparse: %+v", sparse)
	}
	full, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "full.img", CapacityBytes: 4 << 20, AllocationBytes: 4 << 20})
	mustDo(t, "create full", err)
	if full.AllocationBytes < 4<<20 {
		t.Errorf("full: %+v", full)
	}
	_, err = c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "full.img", CapacityBytes: 1})
	wantErr(t, "dup", err, "storage volume 'full.img' exists already")
	_, err = c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "q.img", CapacityBytes: 1, Format: "vmdk"})
	wantErr(t, "vmdk", err, "unsupported configuration: volume format 'vmdk' is not supported by vsh yet")

	// Names cannot leave the pool.
	for _, name := range []string{"../x", "/etc/passwd", "a/b"} {
		_, err := c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: name, CapacityBytes: 1})
		wantErr(t, "escape "+name, err, "invalid argument: invalid volume name '"+name+"': volume names cannot contain '/' (they must stay inside pool 'p')")
	}
	_, err = c.CreateVolumeAs("p", driver.VolumeCreateAs{Name: "..", CapacityBytes: 1})
	wantErr(t, "dotdot", err, "invalid argument: invalid volume name '..'")
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "link"))
	_, err = c.LookupVolume("p", "link")
	wantErr(t, "symlink out", err, "invalid argument: volume 'link' is a symlink pointing outside pool 'p' (to '"+outside+"')")
	vols, _ := c.ListVolumes("p")
	if len(vols) != 2 {
		t.Errorf("volumes (symlink out must not be listed): %+v", vols)
	}
	_, err = c.LookupVolume("", outside)
	wantErr(t, "outside path", err, "Storage volume not found: no storage vol with matching path '"+outside+"'")

	// Write data at both ends of the sparse volume, clone it, check holes
	// and content survive.
	f, _ := os.OpenFile(sparse.Path, os.O_RDWR, 0)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), 1<<30-4)
	f.Close()
	cl, err := c.CloneVolume(sparse, "clone.img")
	mustDo(t, "clone", err)
	if cl.CapacityBytes != 1<<30 || cl.AllocationBytes > 1<<20 {
		t.Errorf("clone not sparse: %+v", cl)
	}
	g, _ := os.Open(cl.Path)
	buf := make([]byte, 4)
	g.ReadAt(buf, 0)
	head := string(buf)
	g.ReadAt(buf, 1<<30-4)
	g.Close()
	if head != "head" || string(buf) != "tail" {
		t.Errorf("clone content %q %q", head, buf)
	}

	// Resize: grow, refuse shrink without the flag, shrink with it.
	mustDo(t, "grow", c.ResizeVolume(full, 8<<20, driver.VolumeResizeFlags{}))
	wantErr(t, "shrink", c.ResizeVolume(full, 1<<20, driver.VolumeResizeFlags{}),
		"invalid argument: Can't shrink capacity below current capacity unless shrink flag explicitly specified")
	mustDo(t, "shrink", c.ResizeVolume(full, 2<<20, driver.VolumeResizeFlags{Shrink: true}))
	mustDo(t, "delta", c.ResizeVolume(full, 1<<20, driver.VolumeResizeFlags{Delta: true}))
	if v, _ := c.LookupVolume("p", "full.img"); v.CapacityBytes != 3<<20 {
		t.Errorf("after resizes: %+v", v)
	}

	// Wipe zeroes the content and keeps the size.
	mustDo(t, "wipe", c.WipeVolume(cl))
	g, _ = os.Open(cl.Path)
	g.ReadAt(buf, 0)
	st2, _ := g.Stat()
	g.Close()
	if !bytes.Equal(buf, make([]byte, 4)) || st2.Size() != 1<<30 {
		t.Errorf("after wipe: %q size %d", buf, st2.Size())
	}
	x, err := c.VolumeXML(cl)
	mustDo(t, "vol xml", err)
	if !strings.Contains(string(x), "<capacity unit='bytes'>1073741824</capacity>") || !strings.Contains(string(x), cl.Path) {
		t.Errorf("volume XML:\n%s", x)
	}
	px, _ := c.PoolXML("p", false)
	if !strings.Contains(string(px), "<available unit='bytes'>") {
		t.Errorf("pool XML:\n%s", px)
	}

	for _, n := range []string{"sparse.img", "full.img", "clone.img"} {
		v, err := c.LookupVolume("p", n)
		mustDo(t, "lookup "+n, err)
		mustDo(t, "delete "+n, c.DeleteVolume(v))
	}
	os.Remove(filepath.Join(dir, "link"))
	wantErr(t, "delete active", c.DeletePool("p"), "Requested operation is not valid: storage pool 'p' is already active")
	mustDo(t, "destroy", c.DestroyPool("p"))
	_, err = c.ListVolumes("p")
	wantErr(t, "list inactive", err, "Requested operation is not valid: storage pool 'p' is not active")
	mustDo(t, "delete", c.DeletePool("p"))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pool directory still there: %v", err)
	}
	mustDo(t, "undefine", c.UndefinePool("p"))

	// Two pools cannot share a directory.
	_, err = c.DefinePool([]byte("<pool type='dir'><name>a</name><target><path>/srv/x</path></target></pool>"), "a.xml", false)
	mustDo(t, "define a", err)
	_, err = c.DefinePool([]byte("<pool type='dir'><name>b</name><target><path>/srv/x/</path></target></pool>"), "b.xml", false)
	wantErr(t, "same target", err, "operation failed: Storage source conflict with pool: 'a'")
}

// TestAutostart checks that marked objects start on the first connection
// after a boot (a fresh run directory), and only then.
func TestAutostart(t *testing.T) {
	e := newProcEngine()
	DefaultEngine = e
	defer func() { DefaultEngine = nil }()
	c := openTemp(t)
	home := os.Getenv("VSH_HOME")
	_, err := c.DefineDomain([]byte(vmXML("auto")), "auto.xml", false)
	mustDo(t, "define", err)
	mustDo(t, "autostart", c.SetDomainAutostart("auto", true))
	_, err = c.DefineDomain([]byte(vmXML("manual")), "manual.xml", false)
	mustDo(t, "define manual", err)
	pool := filepath.Join(t.TempDir(), "p")
	os.Mkdir(pool, 0o755)
	_, err = c.DefinePool([]byte("<pool type='dir'><name>p</name><target><path>"+pool+"</path></target></pool>"), "p.xml", false)
	mustDo(t, "define pool", err)
	mustDo(t, "pool autostart", c.SetPoolAutostart("p", true))

	c2, _ := driver.Open("vsh:///session", false)
	if d, _ := c2.LookupDomain("auto"); d.Active() {
		t.Fatalf("autostarted without a reboot")
	}
	// Simulate a reboot: the run directory (tmpfs) is empty again.
	os.RemoveAll(filepath.Join(home, "run"))
	c3, err := driver.Open("vsh:///session", false)
	mustDo(t, "open after reboot", err)
	if d, _ := c3.LookupDomain("auto"); !d.Active() {
		t.Errorf("autostart domain not started: %+v", d)
	}
	if d, _ := c3.LookupDomain("manual"); d.Active() {
		t.Errorf("manual domain started: %+v", d)
	}
	if p, _ := c3.LookupPool("p"); !p.Active() {
		t.Errorf("autostart pool not started: %+v", p)
	}
	mustDo(t, "destroy", c3.DestroyDomain("auto", false))
}

// TestIndexSeesOtherWriters checks that the listing cache notices
// definitions changed by another process.
func TestIndexSeesOtherWriters(t *testing.T) {
	c := openTemp(t)
	for _, n := range []string{"a", "b", "c"} {
		_, err := c.DefineDomain([]byte(vmXML(n)), n+".xml", false)
		mustDo(t, "define", err)
	}
	if l, _ := c.ListDomains(); len(l) != 3 {
		t.Fatalf("list: %+v", l)
	}
	other, err := OpenPaths("vsh:///session", c.(*Conn).StatePaths(), false, false)
	mustDo(t, "open other", err)
	mustDo(t, "title", other.SetDomainMetadata("b", true, "changed elsewhere", driver.ModifyScope{}))
	mustDo(t, "undefine", other.UndefineDomain("c", driver.UndefineFlags{}))
	l, _ := c.ListDomains()
	if len(l) != 2 || l[1].Name != "b" || l[1].Title != "changed elsewhere" {
		t.Fatalf("stale listing: %+v", l)
	}
}

// TestRenameRecovery checks that a rename interrupted between writing the
// new definition and removing the old one reads as done, and is finished
// by the next writer.
func TestRenameRecovery(t *testing.T) {
	c := openTemp(t)
	conn := c.(*Conn)
	_, err := c.DefineDomain([]byte(vmXML("old")), "old.xml", false)
	mustDo(t, "define", err)
	b, _ := os.ReadFile(conn.defPath("old"))
	// The state a crash mid-rename leaves: journal, new file, old file.
	os.WriteFile(conn.renameJournal(), []byte("old\nnew\n"), 0o600)
	os.WriteFile(conn.defPath("new"), bytes.Replace(b, []byte("<name>old</name>"), []byte("<name>new</name>"), 1), 0o600)
	l, _ := c.ListDomains()
	if len(l) != 1 || l[0].Name != "new" {
		t.Fatalf("listing mid-rename: %+v", l)
	}
	if _, err := c.LookupDomain("old"); driver.Code(err) != driver.ErrNoDomain {
		t.Errorf("old name still resolves mid-rename: %v", err)
	}
	_, err = c.DefineDomain([]byte(vmXML("other")), "other.xml", false)
	mustDo(t, "next write", err)
	if _, err := os.Stat(conn.defPath("old")); !os.IsNotExist(err) {
		t.Errorf("old definition left behind: %v", err)
	}
	if _, err := os.Stat(conn.renameJournal()); !os.IsNotExist(err) {
		t.Errorf("journal left behind: %v", err)
	}
}
