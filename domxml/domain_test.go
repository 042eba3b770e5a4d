package domxml

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"vsh/hypervisor"
	"vsh/schema"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDomain(t *testing.T, name, text string) *Domain {
	t.Helper()
	d, err := ParseDomain(name, []byte(text), false)
	if err != nil {
		t.Fatalf("ParseDomain(%s): %v", name, err)
	}
	return d
}

func TestParseDomainModel(t *testing.T) {
	d, err := ParseDomain("smp-virtio.xml", readFile(t, "../examples/domains/smp-virtio.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Type", d.Type, "kvm"},
		{"Name", d.Name, "smp-virtio"},
		{"Title", d.Title, "SMP guest with virtio devices"},
		{"MemoryKiB", d.MemoryKiB, uint64(2 << 20)},
		{"CurrentMemoryKiB", d.CurrentMemoryKiB, uint64(1536 << 10)},
		{"VCPU", d.VCPU, VCPU{Count: 4, Current: 4, Placement: "static"}},
		{"OS.Machine", d.OS.Machine, "pc"},
		{"OS.Kernel", d.OS.Kernel, "/var/cache/vsh/guest/vmlinux"},
		{"Features", d.Features, []string{"acpi", "apic"}},
		{"CPU.Mode", d.CPU.Mode, "host-passthrough"},
		{"Topology", *d.CPU.Topology, Topology{Sockets: 1, Dies: 1, Cores: 2, Threads: 2}},
		{"Clock", d.Clock.Offset, "utc"},
		{"OnReboot", d.OnReboot, "restart"},
		{"Disks", d.Devices.Disks, []Disk{{Type: "file", Device: "disk", SourceFile: "/var/lib/vsh/images/smp-virtio.qcow2",
			DriverName: "qemu", DriverType: "qcow2", Cache: "none", Discard: "unmap", TargetDev: "vda", TargetBus: "virtio", Serial: "SMP-ROOT"}}},
		{"Interfaces", d.Devices.Interfaces, []Interface{{Type: "network", MAC: "52:54:00:12:34:56", SourceNetwork: "nat", Model: "virtio"}}},
		{"Serials", d.Devices.Serials, []Char{{Type: "pty"}}},
		{"Consoles", d.Devices.Consoles, []Char{{Type: "pty", TargetType: "serial"}}},
		{"RNGs", d.Devices.RNGs, []RNG{{Model: "virtio", BackendModel: "random", BackendDevice: "/dev/urandom", RateBytes: 1024, RatePeriodMs: 1000}}},
		{"MemBalloon", *d.Devices.MemBalloon, MemBalloon{Model: "virtio", StatsPeriodSeconds: 10}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}

	n, err := ParseDomain("numa-pinned.xml", readFile(t, "../examples/domains/numa-pinned.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []NUMACell{{0, "0-1", 1 << 20}, {1, "2-3", 1 << 20}}; !reflect.DeepEqual(n.CPU.NUMA, want) {
		t.Errorf("NUMA = %v, want %v", n.CPU.NUMA, want)
	}
	if want := (MemoryBacking{HugePages: true, Pages: []HugePage{{SizeKiB: 2048}}, NoSharePages: true}); !reflect.DeepEqual(n.MemoryBacking, want) {
		t.Errorf("MemoryBacking = %+v, want %+v", n.MemoryBacking, want)
	}
	if n.NUMATune == nil || n.NUMATune.Mode != "strict" || n.NUMATune.Nodeset != "0" {
		t.Errorf("NUMATune = %+v", n.NUMATune)
	}
	if n.CPUTune == nil || len(n.CPUTune.VCPUPins) != 4 || n.CPUTune.VCPUPins[3] != (VCPUPin{3, "3"}) {
		t.Errorf("CPUTune = %+v", n.CPUTune)
	}
	if n.VCPU.CPUSet != "0-3" {
		t.Errorf("VCPU.CPUSet = %q", n.VCPU.CPUSet)
	}
}

func TestParseDomainErrors(t *testing.T) {
	tests := []struct {
		name, xml string
		want      string // regexp over the error text
	}{
		{"bad unit", "<domain type='kvm'>\n  <name>a</name>\n  <memory unit='XB'>1</memory>\n  <os><type>hvm</type></os>\n</domain>", `^bad unit:3:3: .*`},
		{"fraction", "<domain type='kvm'>\n  <name>a</name>\n  <memory>1.5</memory>\n  <os><type>hvm</type></os>\n</domain>", `^fraction:3:3: .*`},
		{"bad uuid", "<domain type='kvm'>\n  <name>a</name>\n  <uuid>nope</uuid>\n  <memory>1</memory>\n  <os><type>hvm</type></os>\n</domain>", `^bad uuid:3:3: .*`},
		{"multicast mac", "<domain type='kvm'>\n  <name>a</name>\n  <memory>1</memory>\n  <devices>\n    <interface type='network'>\n      <mac address='01:00:00:00:00:01'/>\n      <source network='default'/>\n    </interface>\n  </devices>\n  <os><type>hvm</type></os>\n</domain>", `^multicast mac:6:7: .*`},
		{"wrong root", "<network><name>n</name></network>", `^wrong root:1:1: expecting root element of 'domain', not 'network'`},
		{"malformed", "<domain type='kvm'>\n  <name>a</name>\n", `^malformed:\d+:\d+: .*`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDomain(tt.name, []byte(tt.xml), false)
			if err == nil {
				t.Fatal("no error")
			}
			var l schema.ErrorList
			if !errors.As(err, &l) {
				t.Fatalf("error %T is not a schema.ErrorList: %v", err, err)
			}
			if !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Errorf("error %q does not match %q", err, tt.want)
			}
		})
	}
}

// roundTripFiles are documents whose unedited XML() must be byte-identical.
func roundTripFiles(t *testing.T) []string {
	var files []string
	for _, g := range []string{"../examples/domains/*.xml", "testdata/*.xml", "/work/shared/reference/examples/*.xml"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no test documents found")
	}
	return files
}

// parseAny parses a document of any kind.
func parseAny(file string, data []byte) (xmler, error) {
	doc, err := schema.Parse(file, data)
	if err != nil {
		return nil, err
	}
	switch doc.Kind {
	case schema.KindDomain:
		return ParseDomain(file, data, false)
	case schema.KindNetwork:
		return ParseNetwork(file, data, false)
	case schema.KindPool:
		return ParsePool(file, data, false)
	default:
		return ParseVolume(file, data, false)
	}
}

type xmler interface{ XML() []byte }

func TestRoundTripUnedited(t *testing.T) {
	for _, f := range roundTripFiles(t) {
		data := readFile(t, f)
		o, err := parseAny(filepath.Base(f), data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if got := o.XML(); !bytes.Equal(got, data) {
			t.Errorf("%s: XML() differs from the file:\n%s", f, got)
		}
	}
}

// removedLines returns the lines of a that are missing from b, in order,
// assuming b is a with lines inserted.
func insertedLines(orig, got []byte) ([]string, bool) {
	o, g := strings.SplitAfter(string(orig), "\n"), strings.SplitAfter(string(got), "\n")
	var ins []string
	i := 0
	for _, l := range g {
		if i < len(o) && l == o[i] {
			i++
			continue
		}
		ins = append(ins, l)
	}
	return ins, i == len(o)
}

func TestFillDefaultsInsertsOnlyUUIDAndMAC(t *testing.T) {
	data := readFile(t, "testdata/minimal.xml")
	d := mustDomain(t, "minimal.xml", string(data))
	changed, err := d.FillDefaults()
	if err != nil || !changed {
		t.Fatalf("FillDefaults = %v, %v", changed, err)
	}
	got := d.XML()
	// The one-line interface gets its MAC inline, on the same line.
	inlineMAC := regexp.MustCompile(`<mac address='52:54:00:[0-9a-f:]{8}'/><source bridge`)
	if !inlineMAC.Match(got) {
		t.Errorf("inline interface not filled in place:\n%s", got)
	}
	ins, ok := insertedLines(data, inlineMAC.ReplaceAll(got, []byte("<source bridge")))
	if !ok {
		t.Fatalf("FillDefaults changed existing lines:\n%s", got)
	}
	uuidLine := regexp.MustCompile(`^  <uuid>[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}</uuid>\n$`)
	macLine := regexp.MustCompile(`^      <mac address='52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}'/>\n$`)
	if len(ins) != 2 || !uuidLine.MatchString(ins[0]) || !macLine.MatchString(ins[1]) {
		t.Fatalf("inserted lines %q, want a uuid line and a mac line", ins)
	}
	// The one-line interface got its MAC inline, on the same line.
	if !regexp.MustCompile(`<interface type='bridge'><mac address='52:54:00:[0-9a-f:]{8}'/><source bridge='br0'/></interface>`).Match(got) {
		t.Errorf("inline interface not filled in place:\n%s", got)
	}
	if d.UUID == "" || d.Devices.Interfaces[0].MAC == "" || d.Devices.Interfaces[1].MAC == "" {
		t.Errorf("typed fields not updated: %q %+v", d.UUID, d.Devices.Interfaces)
	}
	// A second call has nothing to do.
	if changed, _ := d.FillDefaults(); changed {
		t.Error("second FillDefaults changed the document")
	}
	// The result parses again to the same model.
	again := mustDomain(t, "again.xml", string(got))
	if again.UUID != d.UUID || !reflect.DeepEqual(again.Devices, d.Devices) {
		t.Errorf("re-parsed model differs")
	}
}

// TestCurrentMemoryAboveMemory: like libvirt, the model never has a
// balloon target above the memory size, and define (FillDefaults) writes
// the lowered value back; a target at or below the size is kept.
func TestCurrentMemoryAboveMemory(t *testing.T) {
	for _, tc := range []struct {
		name, cur   string
		wantCurKiB  uint64
		wantChanged bool
		wantElement string
	}{
		{"above", "<currentMemory unit='GiB'>2</currentMemory>", 1 << 20, true, "<currentMemory unit='KiB'>1048576</currentMemory>"},
		{"equal", "<currentMemory unit='MiB'>1024</currentMemory>", 1 << 20, false, "<currentMemory unit='MiB'>1024</currentMemory>"},
		{"below", "<currentMemory unit='MiB'>512</currentMemory>", 512 << 10, false, "<currentMemory unit='MiB'>512</currentMemory>"},
		{"zero", "<currentMemory>0</currentMemory>", 1 << 20, false, "<currentMemory>0</currentMemory>"},
		{"absent", "", 1 << 20, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "<domain type='kvm'>\n  <name>m</name>\n  <uuid>7a2c4f0e-3b1d-4c5e-9f00-1234567890ab</uuid>\n  <memory unit='GiB'>1</memory>\n  " + tc.cur + "\n  <os><type>hvm</type></os>\n</domain>\n"
			d := mustDomain(t, "m.xml", doc)
			if d.CurrentMemoryKiB != tc.wantCurKiB {
				t.Errorf("CurrentMemoryKiB = %d, want %d", d.CurrentMemoryKiB, tc.wantCurKiB)
			}
			changed, err := d.FillDefaults()
			if err != nil || changed != tc.wantChanged {
				t.Fatalf("FillDefaults = %v, %v; want changed %v", changed, err, tc.wantChanged)
			}
			if tc.wantElement != "" && !strings.Contains(string(d.XML()), tc.wantElement) {
				t.Errorf("document lacks %s:\n%s", tc.wantElement, d.XML())
			}
			if d.CurrentMemoryKiB != tc.wantCurKiB || d.MemoryKiB != 1<<20 {
				t.Errorf("after FillDefaults: current %d, memory %d", d.CurrentMemoryKiB, d.MemoryKiB)
			}
		})
	}
}

func TestFillDefaultsIndentation(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"four spaces",
			"<domain type='kvm'>\n    <name>a</name>\n    <memory>1</memory>\n    <os><type>hvm</type></os>\n</domain>\n",
			"<domain type='kvm'>\n    <name>a</name>\n    <uuid>U</uuid>\n    <memory>1</memory>\n    <os><type>hvm</type></os>\n</domain>\n"},
		{"tabs",
			"<domain type='kvm'>\n\t<name>a</name>\n\t<memory>1</memory>\n\t<os><type>hvm</type></os>\n</domain>",
			"<domain type='kvm'>\n\t<name>a</name>\n\t<uuid>U</uuid>\n\t<memory>1</memory>\n\t<os><type>hvm</type></os>\n</domain>"},
		{"one line",
			"<domain type='kvm'><name>a</name><memory>1</memory><os><type>hvm</type></os></domain>",
			"<domain type='kvm'><name>a</name><uuid>U</uuid><memory>1</memory><os><type>hvm</type></os></domain>"},
		{"comment-only devices keep the comment",
			"<domain type='kvm'>\n  <name>a</name>\n  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>\n  <memory>1</memory>\n  <devices><!-- none yet --></devices>\n  <os><type>hvm</type></os>\n</domain>",
			"<domain type='kvm'>\n  <name>a</name>\n  <uuid>U</uuid>\n  <memory>1</memory>\n  <devices><interface type='user'><mac address='52:54:00:00:00:01'/></interface><!-- none yet --></devices>\n  <os><type>hvm</type></os>\n</domain>"},
	}
	uuid := regexp.MustCompile(`<uuid>[-0-9a-f]{36}</uuid>`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDomain(t, tt.name, tt.in)
			if strings.Contains(tt.in, "none yet") {
				if err := d.AddInterface(Interface{Type: "user", MAC: "52:54:00:00:00:01"}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.FillDefaults(); err != nil {
				t.Fatal(err)
			}
			got := uuid.ReplaceAllString(string(d.XML()), "<uuid>U</uuid>")
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

const editBase = `<domain type='kvm'>
  <!-- keep me -->
  <name>a</name>
  <memory unit='MiB'>512</memory>
  <currentMemory unit='MiB'>512</currentMemory>
  <vcpu>2</vcpu>
  <os>
    <type>hvm</type>
    <kernel>/k</kernel>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/a.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:00:00:01'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>
`

func TestEdits(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(d *Domain) error
		diff  string // expected XML with the edit applied
		check func(d *Domain) bool
	}{
		{"SetName", func(d *Domain) error { d.SetName("b"); return nil },
			strings.Replace(editBase, "<name>a</name>", "<name>b</name>", 1),
			func(d *Domain) bool { return d.Name == "b" }},
		{"SetUUID canonicalizes", func(d *Domain) error { d.SetUUID("3E3FCE454F534FA7BB3211F34168B82B"); return nil },
			strings.Replace(editBase, "<name>a</name>\n", "<name>a</name>\n  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>\n", 1),
			func(d *Domain) bool { return d.UUID == "3e3fce45-4f53-4fa7-bb32-11f34168b82b" }},
		{"SetTitle and SetDescription", func(d *Domain) error { d.SetDescription("d & e"); d.SetTitle("T"); return nil },
			strings.Replace(editBase, "<name>a</name>\n", "<name>a</name>\n  <title>T</title>\n  <description>d &amp; e</description>\n", 1),
			func(d *Domain) bool { return d.Title == "T" && d.Description == "d & e" }},
		{"SetMemoryKiB lowers currentMemory", func(d *Domain) error { d.SetMemoryKiB(262144); return nil },
			strings.Replace(editBase, "  <memory unit='MiB'>512</memory>\n  <currentMemory unit='MiB'>512</currentMemory>",
				"  <memory unit='KiB'>262144</memory>\n  <currentMemory unit='KiB'>262144</currentMemory>", 1),
			func(d *Domain) bool { return d.MemoryKiB == 262144 && d.CurrentMemoryKiB == 262144 }},
		{"SetCurrentMemoryKiB", func(d *Domain) error { d.SetCurrentMemoryKiB(131072); return nil },
			strings.Replace(editBase, "<currentMemory unit='MiB'>512</currentMemory>", "<currentMemory unit='KiB'>131072</currentMemory>", 1),
			func(d *Domain) bool { return d.CurrentMemoryKiB == 131072 && d.MemoryKiB == 512<<10 }},
		{"SetMaxMemoryKiB", func(d *Domain) error { d.SetMaxMemoryKiB(4 << 20); return nil },
			strings.Replace(editBase, "  <memory unit='MiB'>", "  <maxMemory unit='KiB' slots='16'>4194304</maxMemory>\n  <memory unit='MiB'>", 1),
			func(d *Domain) bool { return d.MaxMemoryKiB == 4<<20 && d.MaxMemorySlots == 16 }},
		{"SetVCPUs", func(d *Domain) error { d.SetVCPUs(4, 1); return nil },
			strings.Replace(editBase, "<vcpu>2</vcpu>", "<vcpu current='1'>4</vcpu>", 1),
			func(d *Domain) bool { return d.VCPU.Count == 4 && d.VCPU.Current == 1 }},
		{"AddInterface", func(d *Domain) error {
			return d.AddInterface(Interface{Type: "bridge", MAC: "52:54:00:AA:BB:CC", SourceBridge: "br0", Model: "virtio"})
		},
			strings.Replace(editBase, "    </interface>\n", "    </interface>\n    <interface type='bridge'>\n      <mac address='52:54:00:aa:bb:cc'/>\n      <source bridge='br0'/>\n      <model type='virtio'/>\n    </interface>\n", 1),
			func(d *Domain) bool {
				return len(d.Devices.Interfaces) == 2 && d.Devices.Interfaces[1].SourceBridge == "br0"
			}},
		{"AddDisk", func(d *Domain) error {
			return d.AddDisk(Disk{SourceFile: "/b.qcow2", DriverType: "qcow2", TargetDev: "vdb", ReadOnly: true})
		},
			strings.Replace(editBase, "    </disk>\n", "    </disk>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/b.qcow2'/>\n      <target dev='vdb' bus='virtio'/>\n      <readonly/>\n    </disk>\n", 1),
			func(d *Domain) bool { return len(d.Devices.Disks) == 2 && d.Devices.Disks[1].DriverType == "qcow2" }},
		{"RemoveDisk by target", func(d *Domain) error { return d.RemoveDisk("vda") },
			strings.Replace(editBase, "    <disk type='file' device='disk'>\n      <source file='/a.img'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n", "", 1),
			func(d *Domain) bool { return len(d.Devices.Disks) == 0 }},
		{"RemoveDisk by source", func(d *Domain) error { return d.RemoveDisk("/a.img") },
			strings.Replace(editBase, "    <disk type='file' device='disk'>\n      <source file='/a.img'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n", "", 1),
			func(d *Domain) bool { return len(d.Devices.Disks) == 0 }},
		{"RemoveInterface by MAC", func(d *Domain) error { return d.RemoveInterface("52:54:00:00:00:01") },
			strings.Replace(editBase, "    <interface type='network'>\n      <mac address='52:54:00:00:00:01'/>\n      <source network='default'/>\n    </interface>\n", "", 1),
			func(d *Domain) bool { return len(d.Devices.Interfaces) == 0 }},
		{"RemoveInterface by type", func(d *Domain) error { return d.RemoveInterface("network") },
			strings.Replace(editBase, "    <interface type='network'>\n      <mac address='52:54:00:00:00:01'/>\n      <source network='default'/>\n    </interface>\n", "", 1),
			func(d *Domain) bool { return len(d.Devices.Interfaces) == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDomain(t, "edit.xml", editBase)
			if err := tt.edit(d); err != nil {
				t.Fatal(err)
			}
			if got := string(d.XML()); got != tt.diff {
				t.Errorf("got\n%s\nwant\n%s", got, tt.diff)
			}
			if !tt.check(d) {
				t.Errorf("typed fields not updated: %+v", d)
			}
		})
	}
}

func TestEditErrors(t *testing.T) {
	d := mustDomain(t, "edit.xml", editBase)
	cases := []struct {
		name string
		err  error
	}{
		{"duplicate MAC", d.AddInterface(Interface{Type: "network", SourceNetwork: "x", MAC: "52:54:00:00:00:01"})},
		{"bad MAC", d.AddInterface(Interface{Type: "network", SourceNetwork: "x", MAC: "zz"})},
		{"no source", d.AddInterface(Interface{Type: "network"})},
		{"bad type", d.AddInterface(Interface{Type: "vhostuser"})},
		{"no such MAC", d.RemoveInterface("52:54:00:00:00:09")},
		{"no such type", d.RemoveInterface("bridge")},
		{"duplicate target", d.AddDisk(Disk{SourceFile: "/x", TargetDev: "vda"})},
		{"no target", d.AddDisk(Disk{SourceFile: "/x"})},
		{"no source", d.AddDisk(Disk{TargetDev: "vdc"})},
		{"no such disk", d.RemoveDisk("vdz")},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if got := string(d.XML()); got != editBase {
		t.Errorf("failed edits changed the document:\n%s", got)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	d := mustDomain(t, "edit.xml", editBase)
	d.SetName("changed")
	c := d.Clone()
	c.SetName("clone")
	c.SetVCPUs(8, 0)
	if d.Name != "changed" || strings.Contains(string(d.XML()), "clone") {
		t.Error("editing the clone changed the original")
	}
	if c.Name != "clone" || c.VCPU.Count != 8 {
		t.Errorf("clone = %+v", c)
	}
	// The clone still keeps the user's comment and lines.
	if !strings.Contains(string(c.XML()), "<!-- keep me -->") {
		t.Error("clone lost the comment")
	}
}

func TestInsertKeepsTrailingComment(t *testing.T) {
	in := "<domain type='kvm'>\n  <name>a</name> <!-- the name -->\n  <memory>1024</memory>\n  <os><type>hvm</type></os>\n</domain>\n"
	d := mustDomain(t, "c.xml", in)
	d.SetUUID("3e3fce45-4f53-4fa7-bb32-11f34168b82b")
	want := "<domain type='kvm'>\n  <name>a</name> <!-- the name -->\n  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>\n  <memory>1024</memory>\n  <os><type>hvm</type></os>\n</domain>\n"
	if got := string(d.XML()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPatchKeepsUserFormatting(t *testing.T) {
	in := `<domain type="kvm">
  <name>a</name>
  <description>Bob's "vm" &gt; yours</description>
  <memory unit="KiB">1024</memory>
  <os><type>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu</emulator>
  </devices>
</domain>`
	d := mustDomain(t, "fmt.xml", in)
	d.SetVCPUs(2, 0)
	want := strings.Replace(in, "  <memory unit=\"KiB\">1024</memory>\n", "  <memory unit=\"KiB\">1024</memory>\n  <vcpu>2</vcpu>\n", 1)
	if got := string(d.XML()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPatchLineEndingsAndMultilineTags(t *testing.T) {
	crlf := "<domain type='kvm'>\r\n  <name>a</name>\r\n  <memory>1024</memory>\r\n  <os><type>hvm</type></os>\r\n  <os><type>hvm</type></os>\n</domain>\r\n"
	d := mustDomain(t, "crlf.xml", crlf)
	d.SetVCPUs(1, 0)
	want := "<domain type='kvm'>\r\n  <name>a</name>\r\n  <memory>1024</memory>\r\n  <vcpu>1</vcpu>\r\n  <os><type>hvm</type></os>\r\n  <os><type>hvm</type></os>\n</domain>\r\n"
	if got := string(d.XML()); got != want {
		t.Errorf("CRLF: got %q, want %q", got, want)
	}

	// A start tag spread over lines is kept as the user wrote it.
	multi := "<domain type='kvm'>\n  <name>a</name>\n  <memory\n     unit='KiB'>1024</memory>\n  <os><type>hvm</type></os>\n</domain>\n"
	d = mustDomain(t, "multi.xml", multi)
	if got := string(d.XML()); got != multi {
		t.Errorf("unedited: got %q", got)
	}
	d.SetVCPUs(1, 0)
	want = "<domain type='kvm'>\n  <name>a</name>\n  <memory\n     unit='KiB'>1024</memory>\n  <vcpu>1</vcpu>\n  <os><type>hvm</type></os>\n</domain>\n"
	if got := string(d.XML()); got != want {
		t.Errorf("multi-line tag: got %q, want %q", got, want)
	}
}

func TestToConfig(t *testing.T) {
	d, err := ParseDomain("smp-virtio.xml", readFile(t, "../examples/domains/smp-virtio.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, unsup, err := d.ToConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(unsup) != 0 {
		t.Errorf("unexpected unsupported elements: %v", unsup)
	}
	want := &hypervisor.Config{
		Name: "smp-virtio", MemoryBytes: 2 << 30, CurrentMemoryBytes: 1536 << 20, VCPUs: 4,
		Topology: hypervisor.Topology{Sockets: 1, Dies: 1, Cores: 2, Threads: 2},
		Boot: hypervisor.Boot{Kernel: "/var/cache/vsh/guest/vmlinux", Initrd: "/var/cache/vsh/guest/initramfs.cpio.gz",
			Cmdline: "console=ttyS0 root=/dev/vda rw"},
		OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy",
		Serials: []hypervisor.Serial{{Index: 0}},
		Disks: []hypervisor.Disk{{Path: "/var/lib/vsh/images/smp-virtio.qcow2", Format: hypervisor.FormatQcow2,
			Cache: hypervisor.CacheNone, Serial: "SMP-ROOT", Target: "vda", Discard: true}},
		NICs:    []hypervisor.NIC{{MAC: "52:54:00:12:34:56", Backend: hypervisor.NICTap, Network: "nat", LinkUp: true}},
		RNGs:    []hypervisor.RNG{{RateBytes: 1024, RatePeriodMs: 1000}},
		Balloon: &hypervisor.Balloon{StatsPeriodSeconds: 10},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("ToConfig =\n%+v\nwant\n%+v", cfg, want)
	}

	n, err := ParseDomain("numa-pinned.xml", readFile(t, "../examples/domains/numa-pinned.xml"), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, unsup, err = n.ToConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.HugePages || !cfg.NoSharePages || !reflect.DeepEqual(cfg.CPUSet, []int{0, 1, 2, 3}) ||
		!reflect.DeepEqual(cfg.VCPUPins, map[int][]int{0: {0}, 1: {1}, 2: {2}, 3: {3}}) {
		t.Errorf("numa-pinned config = %+v", cfg)
	}
	wantUnsup := []string{
		"numa-pinned.xml:19:3: <numatune>: not supported by the vsh engine",
		"numa-pinned.xml:30:5: <numa>: guest NUMA topology is not supported by the vsh engine",
	}
	if got := unsupStrings(unsup); !reflect.DeepEqual(got, wantUnsup) {
		t.Errorf("unsupported =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantUnsup, "\n"))
	}
}

func unsupStrings(u []Unsupported) []string {
	var s []string
	for _, x := range u {
		s = append(s, x.String())
	}
	return s
}

func TestToConfigUnsupported(t *testing.T) {
	const vm = `<domain type='kvm'>
  <name>u</name>
  <memory>1024</memory>
  <vcpu placement='auto'>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <hyperv mode='custom'/>
  </features>
  <clock offset='localtime'>
    <timer name='hpet' present='no'/>
    <timer name='rtc' tickpolicy='catchup'/>
  </clock>
  <on_crash>coredump-destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='cdrom'>
      <source file='/x.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='p' volume='v'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='vmdk'/>
      <source file='/x.vmdk'/>
      <target dev='vdb'/>
    </disk>
    <controller type='usb' model='qemu-xhci'/>
    <controller type='scsi' model='virtio-scsi'/>
    <controller type='pci' model='pcie-root'/>
    <interface type='user'/>
    <interface type='network'>
      <source network='default'/>
      <model type='e1000'/>
    </interface>
    <input type='tablet' bus='usb'/>
    <input type='mouse' bus='ps2'/>
    <graphics type='spice' autoport='yes'/>
    <sound model='ich9'/>
    <video>
      <model type='qxl'/>
    </video>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x03' slot='0x10' function='0x0'/>
      </source>
    </hostdev>
    <memballoon model='virtio' autodeflate='on'/>
  </devices>
</domain>
`
	d := mustDomain(t, "vm.xml", vm)
	cfg, unsup, err := d.ToConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"vm.xml:4:3: <vcpu>: automatic (numad) vCPU placement is not supported by the vsh engine",
		"vm.xml:5:3: <os>: BIOS/UEFI firmware boot is not supported by the vsh engine; use direct kernel boot (<kernel>, <initrd>, <cmdline>)",
		"vm.xml:7:5: <loader type='pflash'>: not supported by the vsh engine",
		"vm.xml:13:5: <hyperv mode='custom'>: not supported by the vsh engine",
		"vm.xml:15:3: <clock offset='localtime'>: clock offset 'localtime' is not supported; the vsh engine keeps the guest clock in UTC",
		"vm.xml:17:5: <timer name='rtc'>: not supported by the vsh engine",
		"vm.xml:19:3: <on_crash>: action 'coredump-destroy' is not supported by the vsh engine (destroy, restart and preserve are)",
		"vm.xml:20:3: <pm>: not supported by the vsh engine",
		"vm.xml:25:5: <disk type='file'>: disk device 'cdrom' is not supported; the vsh engine provides virtio disks",
		"vm.xml:30:5: <disk type='volume'>: volume disks need the storage pool to be resolved",
		"vm.xml:35:7: <driver type='vmdk'>: disk format 'vmdk' is not supported; the vsh engine reads raw and qcow2",
		"vm.xml:39:5: <controller type='usb'>: not supported by the vsh engine",
		"vm.xml:40:5: <controller type='scsi'>: not supported by the vsh engine",
		"vm.xml:42:5: <interface type='user'>: interface type 'user' is not supported; the vsh engine connects network, bridge and ethernet interfaces",
		"vm.xml:45:7: <model type='e1000'>: NIC model 'e1000' is not supported; the vsh engine provides virtio-net",
		"vm.xml:47:5: <input type='tablet'>: not supported by the vsh engine",
		"vm.xml:49:5: <graphics type='spice'>: not supported by the vsh engine",
		"vm.xml:50:5: <sound model='ich9'>: not supported by the vsh engine",
		"vm.xml:51:5: <video>: not supported by the vsh engine",
		"vm.xml:54:5: <hostdev type='pci'>: not supported by the vsh engine",
	}
	if got := unsupStrings(unsup); !reflect.DeepEqual(got, want) {
		t.Errorf("unsupported =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if cfg.Balloon == nil || !cfg.Balloon.DeflateOnOOM || len(cfg.Disks) != 0 || len(cfg.NICs) != 0 {
		t.Errorf("config = %+v", cfg)
	}

	// With a resolver the volume disk converts.
	cfg, unsup, err = d.ToConfigWith(func(pool, vol string) (string, string, error) {
		if pool != "p" || vol != "v" {
			t.Errorf("resolver got %s/%s", pool, vol)
		}
		return "/pools/p/v", "qcow2", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(unsup) != len(want)-1 || len(cfg.Disks) != 1 || cfg.Disks[0].Path != "/pools/p/v" || cfg.Disks[0].Format != hypervisor.FormatQcow2 {
		t.Errorf("with resolver: disks %+v, %d unsupported", cfg.Disks, len(unsup))
	}
	_, _, err = d.ToConfigWith(func(pool, vol string) (string, string, error) {
		return "", "", errors.New("storage volume not found")
	})
	if err == nil || !strings.Contains(err.Error(), "vm.xml:30:5: disk vda: volume 'v' in pool 'p': storage volume not found") {
		t.Errorf("resolver error = %v", err)
	}
}

func TestParseCPUSet(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		ok   bool
	}{
		{"0", []int{0}, true},
		{"0-3,^2,6", []int{0, 1, 3, 6}, true},
		{"1,1,0", []int{0, 1}, true},
		{"^1", nil, false},
		{"3-1", nil, false},
		{"a", nil, false},
		{"", nil, false},
		{"0-5000", nil, false},
	}
	for _, tt := range tests {
		got, err := ParseCPUSet(tt.in)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCPUSet(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func BenchmarkParseDomain(b *testing.B) {
	data, err := os.ReadFile("/work/shared/reference/examples/domain-kvm-full.xml")
	if err != nil {
		data = []byte(genDomain(0xfff))
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseDomain("bench.xml", data, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEditAndWrite(b *testing.B) {
	d, err := ParseDomain("bench.xml", []byte(genDomain(0xfff)), false)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c := d.Clone()
		c.SetVCPUs(4, 2)
		c.XML()
	}
}

func TestPatchKeepsHandFormattedFile(t *testing.T) {
	in := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
		"<!-- hand written -->\n" +
		"<domain type=\"kvm\"  id=\"7\">\n" +
		"\t<name>hand</name>\n" +
		"\t<description>Bob's &quot;vm&quot; &#x3E; yours</description>\n" +
		"\t<memory unit=\"MiB\">512</memory>\n" +
		"\t<vcpu>1</vcpu>\n" +
		"\t<os><type>hvm</type><kernel>/k</kernel></os>\n" +
		"\t<devices>\n" +
		"\t\t<disk type=\"file\"\n" +
		"\t\t      device=\"disk\">\n" +
		"\t\t\t<source file=\"/a.img\" />\n" +
		"\t\t\t<target dev=\"vda\"   bus=\"virtio\"/>\n" +
		"\t\t</disk>\n" +
		"\t\t<interface type=\"network\"><source network=\"default\"/></interface>\n" +
		"\t</devices>\n" +
		"</domain>\n"
	d := mustDomain(t, "hand.xml", in)
	d.SetVCPUs(2, 0)
	if _, err := d.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`[-0-9a-f]{36}`).ReplaceAllString(string(d.XML()), "U")
	got = regexp.MustCompile(`52:54:00(:[0-9a-f]{2}){3}`).ReplaceAllString(got, "M")
	want := strings.Replace(in, "\t<vcpu>1</vcpu>", "\t<vcpu>2</vcpu>", 1)
	want = strings.Replace(want, "\t<name>hand</name>\n", "\t<name>hand</name>\n\t<uuid>U</uuid>\n", 1)
	// A changed line is written in the file's quoting style.
	want = strings.Replace(want, "<interface type=\"network\"><source", "<interface type=\"network\"><mac address=\"M\"/><source", 1)
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestToConfigUnsupportedAttributes(t *testing.T) {
	const vm = `<domain type='kvm'>
  <name>a</name>
  <memory>1024</memory>
  <os>
    <type>hvm</type>
    <kernel>/k</kernel>
  </os>
  <devices>
    <disk type='file' device='disk' snapshot='no'>
      <driver name='qemu' type='raw' io='native'/>
      <source file='/a.img' startupPolicy='optional'/>
      <target dev='vda' bus='virtio' removable='on'/>
    </disk>
    <interface type='network'>
      <source network='default' portgroup='pg'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`
	d := mustDomain(t, "attrs.xml", vm)
	cfg, unsup, err := d.ToConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"attrs.xml:9:37: <disk snapshot='no'>: attribute snapshot is not supported by the vsh engine",
		"attrs.xml:10:38: <driver io='native'>: attribute io is not supported by the vsh engine",
		"attrs.xml:11:29: <source startupPolicy='optional'>: attribute startupPolicy is not supported by the vsh engine",
		"attrs.xml:12:38: <target removable='on'>: attribute removable is not supported by the vsh engine",
		"attrs.xml:15:33: <source portgroup='pg'>: attribute portgroup is not supported by the vsh engine",
	}
	if got := unsupStrings(unsup); !reflect.DeepEqual(got, want) {
		t.Errorf("unsupported =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(cfg.Disks) != 1 || len(cfg.NICs) != 1 {
		t.Errorf("config = %+v", cfg)
	}
}
