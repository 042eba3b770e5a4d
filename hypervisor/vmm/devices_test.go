package vmm

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vsh/hypervisor"
	"vsh/hypervisor/driver"
	"vsh/hypervisor/virtio"
)

// scriptedDevices plays a balloon whose guest follows the target at once
// and reports half its memory free, and one NIC per configured interface
// with counters derived from its position.
type scriptedDevices struct {
	mu          sync.Mutex
	memoryBytes uint64
	hasBalloon  bool
	pages       uint32
	nics        []NICStatus
}

// scriptedUpdate is the time of the scripted guest's statistics report.
var scriptedUpdate = time.Unix(1700000000, 0)

func newScriptedDevices(cfg *hypervisor.Config) *scriptedDevices {
	d := &scriptedDevices{memoryBytes: cfg.MemoryBytes, hasBalloon: cfg.Balloon != nil}
	if cur := cfg.CurrentMemoryBytes; cur != 0 && cur < cfg.MemoryBytes {
		d.pages = uint32((cfg.MemoryBytes - cur) / 4096)
	}
	for i, n := range cfg.NICs {
		tap := n.TapName
		if tap == "" {
			tap = fmt.Sprintf("vnet%d", i)
		}
		k := uint64(i + 1)
		d.nics = append(d.nics, NICStatus{MAC: n.MAC, Tap: tap, LinkUp: n.LinkUp, Stats: virtio.NetStats{
			RxBytes: 1000 * k, RxPackets: 10 * k, RxErrs: k, RxDrops: 2 * k,
			TxBytes: 2000 * k, TxPackets: 20 * k, TxErrs: 3 * k, TxDrops: 4 * k,
		}})
	}
	return d
}

func (m *scriptedMachine) SetMemory(kib uint64) error {
	d := m.devices
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hasBalloon {
		return errors.New("Operation not supported: this domain has no memory balloon")
	}
	if kib*1024 > d.memoryBytes {
		return errors.New("invalid argument: cannot set memory higher than max memory")
	}
	d.pages = uint32((d.memoryBytes - kib*1024) / 4096)
	return nil
}

func (m *scriptedMachine) MemoryStats(refresh bool) (MemoryStats, error) {
	d := m.devices
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.memoryBytes - uint64(d.pages)*4096
	st := virtio.BalloonStats{
		FreeMemory: cur / 2, TotalMemory: cur, MajorFaults: 3,
		Reported: map[uint16]bool{virtio.BalloonStatFreeMemory: true, virtio.BalloonStatTotalMemory: true, virtio.BalloonStatMajorFaults: true},
		Updated:  scriptedUpdate,
	}
	return MemoryStats{Stats: BalloonMemoryStats(d.memoryBytes, d.pages, st, d.hasBalloon, 4096)}, nil
}

func (m *scriptedMachine) NICs() []NICStatus {
	d := m.devices
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]NICStatus(nil), d.nics...)
}

func (m *scriptedMachine) SetLink(mac string, up bool) error {
	d := m.devices
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.nics {
		if sameMAC(d.nics[i].MAC, mac) {
			d.nics[i].LinkUp = up
			return nil
		}
	}
	return fmt.Errorf("invalid argument: no interface with MAC address %s", mac)
}

func TestBalloonMemoryStats(t *testing.T) {
	all := map[uint16]bool{}
	for tag := uint16(0); tag < 10; tag++ {
		all[tag] = true
	}
	for _, tc := range []struct {
		name  string
		pages uint32
		st    virtio.BalloonStats
		have  bool
		rss   uint64
		want  string
	}{
		{"no report yet", 0, virtio.BalloonStats{}, false, 100, "actual=1048576 rss=100"},
		{"inflated", 65536, virtio.BalloonStats{}, false, 0, "actual=786432"},
		{"balloon larger than memory", 1 << 20, virtio.BalloonStats{}, false, 0, "actual=0"},
		{"partial report", 0, virtio.BalloonStats{FreeMemory: 512 << 20, Reported: map[uint16]bool{virtio.BalloonStatFreeMemory: true}, Updated: time.Unix(5, 0)}, true, 7,
			"actual=1048576 unused=524288 last_update=5 rss=7"},
		{"full report", 0, virtio.BalloonStats{
			SwapIn: 4096, SwapOut: 8192, MajorFaults: 1, MinorFaults: 2, FreeMemory: 1 << 20, TotalMemory: 2 << 20,
			AvailableMemory: 3 << 20, DiskCaches: 4 << 20, HugetlbAllocs: 5, HugetlbFail: 6, Reported: all, Updated: time.Unix(9, 0)}, true, 1,
			"actual=1048576 swap_in=4 swap_out=8 major_fault=1 minor_fault=2 unused=1024 available=2048 usable=3072 last_update=9 disk_caches=4096 hugetlb_pgalloc=5 hugetlb_pgfail=6 rss=1"},
	} {
		var got []string
		for _, s := range BalloonMemoryStats(1<<30, tc.pages, tc.st, tc.have, tc.rss) {
			got = append(got, fmt.Sprintf("%s=%d", s.Tag, s.Value))
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, g, tc.want)
		}
	}
}

func memStats(t *testing.T, p Paths) string {
	t.Helper()
	resp, err := Do(p.Socket(), Request{Op: OpMemStats, Refresh: true}, 5*time.Second)
	if err != nil || resp.Memory == nil {
		t.Fatalf("memstats: %+v, %v", resp, err)
	}
	var out []string
	for _, s := range resp.Memory.Stats {
		out = append(out, fmt.Sprintf("%s=%d", s.Tag, s.Value))
	}
	return strings.Join(out, " ")
}

func nicLinks(t *testing.T, p Paths) string {
	t.Helper()
	resp, err := Do(p.Socket(), Request{Op: OpNICs}, 5*time.Second)
	if err != nil {
		t.Fatalf("nics: %v", err)
	}
	var out []string
	for _, n := range resp.NICs {
		out = append(out, fmt.Sprintf("%s/%s/%v/rx%d/tx%d", n.Tap, n.MAC, n.LinkUp, n.Stats.RxBytes, n.Stats.TxBytes))
	}
	return strings.Join(out, " ")
}

// TestDeviceOps drives memstats, setmem, nics and setlink through the
// control socket, and checks that a reboot keeps the balloon target and
// the link states.
func TestDeviceOps(t *testing.T) {
	cfg := &hypervisor.Config{Name: "devs", UUID: "u", MemoryBytes: 1 << 30, CurrentMemoryBytes: 768 << 20,
		Balloon: &hypervisor.Balloon{},
		NICs: []hypervisor.NIC{
			{MAC: "52:54:00:00:00:01", LinkUp: true},
			{MAC: "52:54:00:00:00:02", TapName: "mytap", LinkUp: false},
		}}
	p, _ := launch(t, cfg)
	waitRecord(t, p, func(r Record) bool { return r.State == driver.StateRunning })

	if got, want := memStats(t, p), "actual=786432 major_fault=3 unused=393216 available=786432 last_update=1700000000 rss=4096"; got != want {
		t.Errorf("memstats at boot:\n got %s\nwant %s", got, want)
	}
	if _, err := Do(p.Socket(), Request{Op: OpSetMem, KiB: 512 << 10}, 5*time.Second); err != nil {
		t.Fatalf("setmem: %v", err)
	}
	if got := memStats(t, p); !strings.HasPrefix(got, "actual=524288 ") {
		t.Errorf("memstats after setmem: %s", got)
	}
	if _, err := Do(p.Socket(), Request{Op: OpSetMem, KiB: 2 << 20}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "higher than max memory") {
		t.Errorf("setmem above the maximum: %v", err)
	}

	if got, want := nicLinks(t, p), "vnet0/52:54:00:00:00:01/true/rx1000/tx2000 mytap/52:54:00:00:00:02/false/rx2000/tx4000"; got != want {
		t.Errorf("nics:\n got %s\nwant %s", got, want)
	}
	for _, tc := range []struct {
		req     Request
		wantErr string
	}{
		{Request{Op: OpSetLink, MAC: "52:54:00:00:00:01", Up: false}, ""},
		{Request{Op: OpSetLink, MAC: "52:54:00:00:00:02", Up: true}, ""},
		{Request{Op: OpSetLink, MAC: "52:54:00:00:00:09", Up: true}, "no interface with MAC address 52:54:00:00:00:09"},
		{Request{Op: OpSetLink}, "needs the interface's MAC address"},
	} {
		_, err := Do(p.Socket(), tc.req, 5*time.Second)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: error %v, want %q", tc.req, err, tc.wantErr)
		}
	}
	wantLinks := "vnet0/52:54:00:00:00:01/false/rx1000/tx2000 mytap/52:54:00:00:00:02/true/rx2000/tx4000"
	if got := nicLinks(t, p); got != wantLinks {
		t.Errorf("nics after setlink:\n got %s\nwant %s", got, wantLinks)
	}

	// A guest reboot builds a new machine from the configuration, which
	// must carry the live changes.
	con, r := attach(t, p, false)
	defer con.Close()
	fmt.Fprintf(con, "reboot\r")
	expectLine(t, r, "boot 2 of devs")
	waitRecord(t, p, func(r Record) bool { return r.State == driver.StateRunning })
	if got := memStats(t, p); !strings.HasPrefix(got, "actual=524288 ") {
		t.Errorf("memstats after reboot: %s", got)
	}
	if got := nicLinks(t, p); got != wantLinks {
		t.Errorf("nics after reboot:\n got %s\nwant %s", got, wantLinks)
	}
}

// TestDeviceOpsNotRunning checks the ops on a VMM whose machine is gone
// (on_crash=preserve keeps the VMM without a machine).
func TestDeviceOpsNotRunning(t *testing.T) {
	p, _ := launch(t, &hypervisor.Config{Name: "gone", UUID: "u", OnCrash: hypervisor.ActionPreserve})
	waitRecord(t, p, func(r Record) bool { return r.State == driver.StateRunning })
	con, r := attach(t, p, false)
	defer con.Close()
	fmt.Fprintf(con, "panic\r")
	expectLine(t, r, "echo: panic")
	waitRecord(t, p, func(r Record) bool { return r.State == driver.StateCrashed })
	for _, op := range []string{OpMemStats, OpNICs, OpSetLink, OpSetMem} {
		if _, err := Do(p.Socket(), Request{Op: op, MAC: "52:54:00:00:00:01"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "domain is not running") {
			t.Errorf("%s on a crashed domain: %v", op, err)
		}
	}
}
