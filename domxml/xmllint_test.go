package domxml

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vsh/schema"
)

const schemaDir = "/usr/share/libvirt/schemas"

// xmllintFiles validates files against libvirt's RNG schema rng with the
// real xmllint and reports every failure.
func xmllintFiles(t *testing.T, rng string, files []string) {
	t.Helper()
	if len(files) == 0 {
		return
	}
	args := append([]string{"--noout", "--relaxng", filepath.Join(schemaDir, rng)}, files...)
	out, err := exec.Command("xmllint", args...).CombinedOutput()
	if err != nil {
		var bad []string
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" && !strings.HasSuffix(l, " validates") {
				bad = append(bad, l)
			}
		}
		t.Errorf("xmllint --relaxng %s: %v\n%s", rng, err, strings.Join(bad, "\n"))
		for _, f := range files {
			if strings.Contains(string(out), f+" fails") {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, b)
			}
		}
	}
}

func needXmllint(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Skip("xmllint not installed: apt-get install libxml2-utils")
	}
	if _, err := os.Stat(filepath.Join(schemaDir, "domain.rng")); err != nil {
		t.Skip("libvirt RNG schemas not installed: apt-get install libvirt0")
	}
}

var rngOf = map[string]string{"domain": "domain.rng", "network": "network.rng", "pool": "storagepool.rng", "volume": "storagevol.rng"}

func TestExamplesValidateWithXmllint(t *testing.T) {
	needXmllint(t)
	files, _ := filepath.Glob("../examples/domains/*.xml")
	if len(files) < 8 {
		t.Fatalf("expected at least 8 examples, found %d", len(files))
	}
	byKind := map[string][]string{}
	for _, f := range files {
		data := readFile(t, f)
		o, err := parseAny(filepath.Base(f), data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		byKind[kindOf(o)] = append(byKind[kindOf(o)], f)
	}
	for k, fs := range byKind {
		xmllintFiles(t, rngOf[k], fs)
	}
	// vsh's own validator must accept what vsh writes, too.
	for _, fs := range byKind {
		for _, f := range fs {
			if _, err := parseStrict(f, readFile(t, f)); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
}

// parseStrict parses a document of any kind with validation.
func parseStrict(file string, data []byte) (xmler, error) {
	doc, err := schema.Parse(file, data)
	if err != nil {
		return nil, err
	}
	switch doc.Kind {
	case schema.KindDomain:
		return ParseDomain(file, data, true)
	case schema.KindNetwork:
		return ParseNetwork(file, data, true)
	case schema.KindPool:
		return ParsePool(file, data, true)
	default:
		return ParseVolume(file, data, true)
	}
}

func TestExamplesParseStrict(t *testing.T) {
	for _, f := range roundTripFiles(t) {
		if _, err := parseStrict(filepath.Base(f), readFile(t, f)); err != nil {
			t.Errorf("%v", err)
		}
	}
}

func kindOf(o xmler) string {
	switch o.(type) {
	case *Domain:
		return "domain"
	case *Network:
		return "network"
	case *Pool:
		return "pool"
	}
	return "volume"
}

// genDomain builds a varied domain definition from the bits of i.
func genDomain(i int) string {
	bit := func(n int) bool { return i>>n&1 == 1 }
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("<domain type='kvm'>")
	w("  <name>gen%d</name>", i)
	if bit(0) {
		w("  <uuid>%s</uuid>", NewUUID())
	}
	if bit(1) {
		w("  <title>generated %d</title>", i)
		w("  <!-- a comment that must survive -->")
	}
	units := []string{"", " unit='KiB'", " unit='MiB'", " unit='G'"}
	w("  <memory%s>%d</memory>", units[i%4], 1024*(i%4+1))
	if bit(2) {
		w("  <currentMemory%s>%d</currentMemory>", units[i%4], 1024*(i%4+1))
	}
	if bit(3) {
		w("  <memoryBacking>\n    <hugepages/>\n    <nosharepages/>\n  </memoryBacking>")
	}
	if bit(4) {
		w("  <vcpu placement='static' cpuset='0-1' current='1'>2</vcpu>")
		w("  <cputune>\n    <vcpupin vcpu='0' cpuset='0'/>\n    <vcpupin vcpu='1' cpuset='1'/>\n  </cputune>")
	} else {
		w("  <vcpu>1</vcpu>")
	}
	w("  <os>\n    <type arch='x86_64'>hvm</type>")
	if bit(5) {
		w("    <boot dev='hd'/>")
	} else {
		w("    <kernel>/var/cache/vsh/guest/vmlinux</kernel>\n    <initrd>/var/cache/vsh/guest/initramfs.cpio.gz</initrd>\n    <cmdline>console=ttyS0</cmdline>")
	}
	w("  </os>")
	if bit(6) {
		w("  <features>\n    <acpi/>\n    <apic/>\n  </features>")
		w("  <cpu mode='host-passthrough'>\n    <topology sockets='1' dies='1' cores='2' threads='1'/>\n  </cpu>")
		w("  <clock offset='utc'/>")
		w("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>")
	}
	if bit(7) {
		w("  <devices/>")
		w("</domain>")
		return b.String()
	}
	w("  <devices>")
	switch i % 3 {
	case 0:
		w("    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2' cache='none'/>\n      <source file='/var/lib/vsh/images/gen%d.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>", i)
	case 1:
		w("    <disk type='block' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source dev='/dev/vg0/gen%d'/>\n      <target dev='vda' bus='virtio'/>\n      <readonly/>\n    </disk>", i)
	case 2:
		w("    <disk type='volume' device='disk'>\n      <source pool='images' volume='gen%d.img'/>\n      <target dev='vda' bus='virtio'/>\n      <serial>GEN%d</serial>\n    </disk>", i, i)
	}
	if bit(8) {
		w("    <interface type='network'>\n      <source network='default'/>\n      <model type='virtio'/>\n    </interface>")
	}
	if bit(9) {
		w("    <interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>")
		w("    <interface type='ethernet'>\n      <mac address='52:54:00:00:%02x:%02x'/>\n      <target dev='tap%d'/>\n      <link state='down'/>\n    </interface>", i>>8, i&0xff, i)
	}
	w("    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>")
	if bit(10) {
		w("    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>")
		w("    <memballoon model='virtio'>\n      <stats period='5'/>\n    </memballoon>")
		w("    <vsock model='virtio'>\n      <cid auto='yes'/>\n    </vsock>")
	}
	if bit(11) {
		w("    <graphics type='vnc' port='-1'/>\n    <controller type='usb' model='qemu-xhci'/>")
	}
	w("  </devices>")
	w("</domain>")
	return b.String()
}

// genNetwork builds a varied network definition from the bits of i.
func genNetwork(i int) string {
	modes := []string{"", "<forward/>", "<forward mode='nat'/>", "<forward mode='route'/>", "<forward mode='open'/>"}
	var b strings.Builder
	fmt.Fprintf(&b, "<network>\n  <name>net%d</name>\n", i)
	if m := modes[i%len(modes)]; m != "" {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	if i&8 != 0 {
		b.WriteString("  <bridge stp='on' delay='0'/>\n")
	}
	if i&16 != 0 {
		b.WriteString("  <dns>\n    <forwarder addr='8.8.8.8'/>\n  </dns>\n")
	}
	fmt.Fprintf(&b, "  <ip address='10.%d.0.1' prefix='24'>\n    <dhcp>\n      <range start='10.%d.0.2' end='10.%d.0.99'/>\n    </dhcp>\n  </ip>\n</network>\n", i, i, i)
	return b.String()
}

func TestGeneratedDocumentsValidateWithXmllint(t *testing.T) {
	needXmllint(t)
	dir := t.TempDir()
	byKind := map[string][]string{}
	save := func(kind, name string, data []byte) {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		byKind[kind] = append(byKind[kind], f)
	}
	for i := 0; i < 1<<12; i += 37 {
		src := genDomain(i)
		d, err := ParseDomain(fmt.Sprintf("gen%d.xml", i), []byte(src), false)
		if err != nil {
			t.Fatalf("generated domain %d: %v\n%s", i, err, src)
		}
		save("domain", fmt.Sprintf("d%d-parsed.xml", i), d.XML())
		if _, err := d.FillDefaults(); err != nil {
			t.Fatal(err)
		}
		save("domain", fmt.Sprintf("d%d-filled.xml", i), d.XML())
		e := d.Clone()
		e.SetName(fmt.Sprintf("edited%d", i))
		e.SetTitle("")
		e.SetDescription("edited <by> vsh & its tests")
		e.SetMemoryKiB(2 << 20)
		e.SetCurrentMemoryKiB(1 << 20)
		e.SetVCPUs(4, 2)
		if i%2 == 0 {
			e.SetMaxMemoryKiB(8 << 20)
		}
		if err := e.AddInterface(Interface{Type: "network", SourceNetwork: "default", Model: "virtio", LinkState: "up"}); err != nil {
			t.Fatal(err)
		}
		if err := e.AddInterface(Interface{Type: "bridge", SourceBridge: "br1", TargetDev: "vnet9", MAC: "52:54:00:fe:fe:fe"}); err != nil {
			t.Fatal(err)
		}
		if err := e.RemoveInterface("52:54:00:FE:FE:FE"); err != nil {
			t.Fatal(err)
		}
		if err := e.AddDisk(Disk{SourcePool: "images", SourceVolume: "extra.qcow2", DriverType: "qcow2", TargetDev: "vdz", Serial: "X"}); err != nil {
			t.Fatal(err)
		}
		if err := e.AddDisk(Disk{SourceDev: "/dev/sdz", TargetDev: "vdy", Cache: "none", ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
		if err := e.RemoveDisk("/dev/sdz"); err != nil {
			t.Fatal(err)
		}
		faithful(t, &e.src, e.XML())
		save("domain", fmt.Sprintf("d%d-edited.xml", i), e.XML())
	}
	for i := 0; i < 40; i++ {
		n, err := ParseNetwork("n.xml", []byte(genNetwork(i)), false)
		if err != nil {
			t.Fatalf("generated network %d: %v", i, err)
		}
		n.FillDefaults([]string{"vshbr0"})
		save("network", fmt.Sprintf("n%d.xml", i), n.XML())
	}
	pools := []*Pool{
		NewPool("dir", "dir", PoolSource{}, "/var/lib/vsh/images"),
		NewPool("fs", "fs", PoolSource{Device: "/dev/sdb1", Format: "ext4"}, "/mnt/fs"),
		NewPool("netfs", "netfs", PoolSource{Host: "nfs.example.test", Dir: "/export", Format: "nfs"}, "/mnt/nfs"),
		NewPool("lv", "logical", PoolSource{Name: "vg0", Device: "/dev/sdc", Format: "lvm2"}, "/dev/vg0"),
	}
	for i, p := range pools {
		save("pool", fmt.Sprintf("p%d-new.xml", i), p.XML())
		p.FillDefaults()
		p.SetSizes(1<<40, 1<<30, 1<<40-1<<30)
		save("pool", fmt.Sprintf("p%d-sized.xml", i), p.XML())
	}
	for i, format := range []string{"raw", "qcow2", ""} {
		v := NewVolume(fmt.Sprintf("v%d", i), 1<<30, 0, format, "")
		save("volume", fmt.Sprintf("v%d-new.xml", i), v.XML())
		v.SetKey("/var/lib/vsh/images/v")
		v.SetPath("/var/lib/vsh/images/v")
		v.SetSizes(2<<30, 1<<20)
		v.SetFormat("qcow2")
		save("volume", fmt.Sprintf("v%d-edited.xml", i), v.XML())
	}
	for k, fs := range byKind {
		xmllintFiles(t, rngOf[k], fs)
	}
	// vsh's own validator must accept what vsh writes, too.
	for _, fs := range byKind {
		for _, f := range fs {
			if _, err := parseStrict(f, readFile(t, f)); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
}
