package acpi

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vsh/hypervisor/memory"
)

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestTablesChecksumAndLength(t *testing.T) {
	cfg := Config{APICIDs: []uint8{0, 1, 2, 3}, IOAPICID: 4}
	for _, tc := range []struct {
		sig string
		b   []byte
	}{
		{"DSDT", DSDT()},
		{"FACP", FADT(0x1234)},
		{"APIC", MADT(cfg)},
		{"XSDT", XSDT(1, 2)},
	} {
		if got := string(tc.b[:4]); got != tc.sig {
			t.Errorf("signature %q, want %q", got, tc.sig)
		}
		if l := binary.LittleEndian.Uint32(tc.b[4:8]); int(l) != len(tc.b) {
			t.Errorf("%s: length field %d, table is %d bytes", tc.sig, l, len(tc.b))
		}
		if s := sum(tc.b); s != 0 {
			t.Errorf("%s: checksum sum %#x, want 0", tc.sig, s)
		}
	}
	r := RSDP(0xe0100)
	if sum(r[:20]) != 0 || sum(r) != 0 {
		t.Errorf("RSDP checksums wrong: %#x %#x", sum(r[:20]), sum(r))
	}
}

func TestMADTEntries(t *testing.T) {
	m := MADT(Config{APICIDs: []uint8{0, 2}, IOAPICID: 9})
	var lapics, ioapics, overrides, nmis int
	for off := 44; off < len(m); {
		typ, l := m[off], int(m[off+1])
		if l == 0 || off+l > len(m) {
			t.Fatalf("bad entry length %d at %d", l, off)
		}
		switch typ {
		case 0:
			lapics++
			if lapics == 2 && m[off+3] != 2 {
				t.Errorf("second APIC id %d, want 2", m[off+3])
			}
		case 1:
			ioapics++
			if m[off+2] != 9 || binary.LittleEndian.Uint32(m[off+4:]) != IOAPICAddr {
				t.Errorf("I/O APIC entry wrong: % x", m[off:off+l])
			}
		case 2:
			overrides++
		case 4:
			nmis++
		}
		off += l
	}
	if lapics != 2 || ioapics != 1 || overrides != 2 || nmis != 1 {
		t.Errorf("entries: %d lapic, %d ioapic, %d overrides, %d nmi", lapics, ioapics, overrides, nmis)
	}
}

func TestIsPowerOff(t *testing.T) {
	for _, tc := range []struct {
		v    byte
		want bool
	}{
		{SleepTypeS5<<SleepTypeShift | SleepEnable, true},
		{SleepTypeS5 << SleepTypeShift, false}, // no SLP_EN
		{3<<SleepTypeShift | SleepEnable, false},
		{0, false},
	} {
		if got := IsPowerOff(tc.v); got != tc.want {
			t.Errorf("IsPowerOff(%#x) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestWriteLaysOutTables(t *testing.T) {
	mem, err := memory.New(memory.Region{GPA: 0, Host: make([]byte, 2<<20)})
	if err != nil {
		t.Fatal(err)
	}
	rsdp, err := Write(mem, Config{APICIDs: []uint8{0}, IOAPICID: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := mem.Slice(rsdp, 36)
	if !bytes.HasPrefix(r, []byte("RSD PTR ")) {
		t.Fatalf("no RSDP at %#x", rsdp)
	}
	xsdt := binary.LittleEndian.Uint64(r[24:])
	hdr, _ := mem.Slice(xsdt, 36)
	if string(hdr[:4]) != "XSDT" {
		t.Fatalf("XSDT pointer %#x leads to %q", xsdt, hdr[:4])
	}
	n := (binary.LittleEndian.Uint32(hdr[4:]) - 36) / 8
	var sigs []string
	for i := uint32(0); i < n; i++ {
		a, _ := mem.Uint64(xsdt + 36 + 8*uint64(i))
		s, _ := mem.Slice(a, 4)
		sigs = append(sigs, string(s))
	}
	if strings.Join(sigs, ",") != "FACP,APIC" {
		t.Errorf("XSDT lists %v", sigs)
	}
	if _, err := Write(mem, Config{}); err == nil {
		t.Error("Write with no vCPUs succeeded")
	}
}

// TestTablesDisassemble runs ACPICA's iasl over each table: it parses every
// field and AML opcode and reports checksum or structure problems.
func TestTablesDisassemble(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed: apt-get install acpica-tools")
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"dsdt": DSDT(MMIODevice{Base: 0xd0000000, Size: 0x1000, IRQ: 5}, MMIODevice{Base: 0xd0001000, Size: 0x1000, IRQ: 6}), "facp": FADT(0xe0040), "apic": MADT(Config{APICIDs: []uint8{0, 1}, IOAPICID: 2}),
	} {
		p := filepath.Join(dir, name+".dat")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(iasl, "-d", p).CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", name, err, out)
		}
		dsl, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
		if err != nil {
			t.Fatal(err)
		}
		text := string(dsl)
		if strings.Contains(text, "Incorrect checksum") || strings.Contains(strings.ToLower(text), "invalid") {
			t.Errorf("iasl reports a problem in %s:\n%s", name, text)
		}
		if name == "dsdt" && !strings.Contains(text, "_S5") {
			t.Errorf("disassembled DSDT has no _S5:\n%s", text)
		}
		for _, dev := range []string{`EisaId ("PNP0501")`, `EisaId ("PNP0303")`, `EisaId ("PNP0B00")`, "IRQNoFlags ()\n                    {4}", "{1}", "{8}",
			`Name (_HID, "LNRO0005")`, "0xD0001000,         // Address Base", "Interrupt (ResourceConsumer, Edge, ActiveHigh, Shared, ,, )\n                {\n                    0x00000006,"} {
			if name == "dsdt" && !strings.Contains(text, dev) {
				t.Errorf("disassembled DSDT lacks %s:\n%s", dev, text)
			}
		}
		if name == "facp" && !strings.Contains(text, "Hardware Reduced (V5) : 1") {
			t.Errorf("FADT not hardware-reduced:\n%s", text)
		}
	}
}
