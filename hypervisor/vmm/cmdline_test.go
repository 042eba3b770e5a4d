package vmm

import "testing"

func TestACPICmdline(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"console=ttyS0 noapic reboot=k", "console=ttyS0 reboot=k"},
		{"noapic", ""},
		{"console=ttyS0  pci=off", "console=ttyS0 pci=off"},
		{"noapic=1 nolapic", "noapic=1 nolapic"}, // only the bare flag
	} {
		if got := acpiCmdline(tc.in); got != tc.want {
			t.Errorf("acpiCmdline(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHasParam(t *testing.T) {
	for _, tc := range []struct {
		cmdline, p string
		want       bool
	}{
		{"a tsc_early_khz=100 b", "tsc_early_khz", true},
		{"tsc_early_khz", "tsc_early_khz", true},
		{"tsc_early_khzx=1", "tsc_early_khz", false},
		{"", "noapic", false},
	} {
		if got := hasParam(tc.cmdline, tc.p); got != tc.want {
			t.Errorf("hasParam(%q, %q) = %v, want %v", tc.cmdline, tc.p, got, tc.want)
		}
	}
}
