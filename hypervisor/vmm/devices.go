package vmm

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"vsh/hypervisor/driver"
	"vsh/hypervisor/driver/local"
	"vsh/hypervisor/virtio"
)

// MemoryStats answers memstats: the guest's memory as the balloon and the
// host see it, in virsh dommemstat's tags and order (libvirt's QEMU
// driver: actual, the guest's report, rss).
type MemoryStats struct {
	Stats []driver.MemoryStat `json:"stats"`
}

// NICStatus answers nics: one network interface of the running machine.
type NICStatus struct {
	MAC    string `json:"mac"`
	Tap    string `json:"tap"`
	LinkUp bool   `json:"link_up"`
	// Counters from the guest's point of view (rx: host to guest).
	Stats virtio.NetStats `json:"stats"`
}

// statsWait bounds how long memstats waits for a guest asked for fresh
// statistics: a guest that does not answer still gets the last report.
const statsWait = 2 * time.Second

// guestStatTags maps the virtio statistics to virsh's tags and the divisor
// that turns the guest's unit (bytes or counts) into virsh's (KiB or
// counts), in dommemstat's order.
var guestStatTags = []struct {
	tag     uint16
	name    string
	divisor uint64
}{
	{virtio.BalloonStatSwapIn, "swap_in", 1024},
	{virtio.BalloonStatSwapOut, "swap_out", 1024},
	{virtio.BalloonStatMajorFaults, "major_fault", 1},
	{virtio.BalloonStatMinorFaults, "minor_fault", 1},
	{virtio.BalloonStatFreeMemory, "unused", 1024},
	{virtio.BalloonStatTotalMemory, "available", 1024},
	{virtio.BalloonStatAvailableMemory, "usable", 1024},
	{virtio.BalloonStatDiskCaches, "disk_caches", 1024},
	{virtio.BalloonStatHugetlbAllocations, "hugetlb_pgalloc", 1},
	{virtio.BalloonStatHugetlbFailures, "hugetlb_pgfail", 1},
}

// BalloonMemoryStats turns a balloon's state into dommemstat's lines:
// actual (guest memory minus the balloon), then every statistic the guest
// reported with last_update after usable, then rss.
func BalloonMemoryStats(memoryBytes uint64, actualPages uint32, st virtio.BalloonStats, have bool, rssKiB uint64) []driver.MemoryStat {
	balloon := uint64(actualPages) * 4096
	actual := uint64(0)
	if balloon < memoryBytes {
		actual = (memoryBytes - balloon) / 1024
	}
	out := []driver.MemoryStat{{Tag: "actual", Value: actual}}
	if have {
		for _, t := range guestStatTags {
			if t.tag == virtio.BalloonStatDiskCaches {
				// QEMU reports last_update between usable and disk_caches.
				out = append(out, driver.MemoryStat{Tag: "last_update", Value: uint64(st.Updated.Unix())})
			}
			if st.Reported[t.tag] {
				out = append(out, driver.MemoryStat{Tag: t.name, Value: st.Value(t.tag) / t.divisor})
			}
		}
	}
	if rssKiB > 0 {
		out = append(out, driver.MemoryStat{Tag: "rss", Value: rssKiB})
	}
	return out
}

// MemoryStats reports the balloon's view of guest memory; refresh asks the
// guest for a new report and waits for it (up to statsWait) unless the
// guest already reports periodically.
func (b *built) MemoryStats(refresh bool) (MemoryStats, error) {
	if b.balloon == nil {
		return MemoryStats{Stats: []driver.MemoryStat{
			{Tag: "actual", Value: b.cfg.MemoryBytes / 1024},
			{Tag: "rss", Value: selfRSSKiB()},
		}}, nil
	}
	st, have := b.balloon.Stats()
	periodic := b.cfg.Balloon != nil && b.cfg.Balloon.StatsPeriodSeconds > 0
	if refresh && !(periodic && have) {
		asked := time.Now()
		b.balloon.RequestStats()
		for deadline := asked.Add(statsWait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if st, have = b.balloon.Stats(); have && !st.Updated.Before(asked) {
				break
			}
		}
	}
	return MemoryStats{Stats: BalloonMemoryStats(b.cfg.MemoryBytes, b.balloon.Actual(), st, have, selfRSSKiB())}, nil
}

// NICs reports each network interface with its tap and counters.
func (b *built) NICs() []NICStatus {
	out := make([]NICStatus, 0, len(b.nets))
	for _, n := range b.nets {
		mac := n.dev.MAC()
		out = append(out, NICStatus{
			MAC: net.HardwareAddr(mac[:]).String(), Tap: n.tap.Name(),
			LinkUp: n.dev.LinkUp(), Stats: n.dev.Stats(),
		})
	}
	return out
}

// SetLink sets the link state of the interface with that MAC address.
func (b *built) SetLink(mac string, up bool) error {
	for _, n := range b.nets {
		m := n.dev.MAC()
		if sameMAC(net.HardwareAddr(m[:]).String(), mac) {
			n.dev.SetLink(up)
			return nil
		}
	}
	return fmt.Errorf("invalid argument: no interface with MAC address %s", mac)
}

// sameMAC compares two MAC addresses in any case and separator style.
func sameMAC(a, b string) bool {
	x, err1 := net.ParseMAC(a)
	y, err2 := net.ParseMAC(b)
	if err1 != nil || err2 != nil {
		return strings.EqualFold(a, b)
	}
	return x.String() == y.String()
}

// setLink applies a setlink request and remembers the state in the
// configuration, so that a reboot (a freshly built machine) keeps it.
func (s *server) setLink(m Machine, mac string, up bool) error {
	if err := m.SetLink(mac, up); err != nil {
		return err
	}
	s.mu.Lock()
	for i := range s.cfg.NICs {
		if sameMAC(s.cfg.NICs[i].MAC, mac) {
			s.cfg.NICs[i].LinkUp = up
		}
	}
	s.mu.Unlock()
	return nil
}

// setMemory applies a setmem request and remembers the target, so that a
// reboot starts the new machine's balloon at the same size.
func (s *server) setMemory(m Machine, kib uint64) error {
	if err := m.SetMemory(kib); err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg.CurrentMemoryBytes = kib * 1024
	s.mu.Unlock()
	return nil
}

// SetMemory sets a running domain's balloon target (setmem --live).
func (e Engine) SetMemory(name, runDir string, kib uint64) error {
	_, err := Do(paths(name, runDir).Socket(), Request{Op: OpSetMem, KiB: kib}, 10*time.Second)
	if err != nil {
		return controlError(err)
	}
	return nil
}

// MemoryStats asks a running domain's VMM for fresh memory statistics.
func (e Engine) MemoryStats(name, runDir string) ([]driver.MemoryStat, error) {
	resp, err := Do(paths(name, runDir).Socket(), Request{Op: OpMemStats, Refresh: true}, statsWait+10*time.Second)
	if err != nil {
		return nil, controlError(err)
	}
	if resp.Memory == nil {
		return nil, driver.Errorf(driver.ErrInternal, "the VMM sent no memory statistics")
	}
	return resp.Memory.Stats, nil
}

// Interfaces lists a running domain's network interfaces.
func (e Engine) Interfaces(name, runDir string) ([]local.EngineNIC, error) {
	resp, err := Do(paths(name, runDir).Socket(), Request{Op: OpNICs}, 10*time.Second)
	if err != nil {
		return nil, controlError(err)
	}
	out := make([]local.EngineNIC, len(resp.NICs))
	for i, n := range resp.NICs {
		st := n.Stats
		out[i] = local.EngineNIC{MAC: n.MAC, Tap: n.Tap, LinkUp: n.LinkUp, Stats: driver.InterfaceStats{
			RxBytes: int64(st.RxBytes), RxPackets: int64(st.RxPackets), RxErrs: int64(st.RxErrs), RxDrop: int64(st.RxDrops),
			TxBytes: int64(st.TxBytes), TxPackets: int64(st.TxPackets), TxErrs: int64(st.TxErrs), TxDrop: int64(st.TxDrops),
		}}
	}
	return out, nil
}

// SetLink sets the link state of a running domain's interface.
func (e Engine) SetLink(name, runDir, mac string, up bool) error {
	_, err := Do(paths(name, runDir).Socket(), Request{Op: OpSetLink, MAC: mac, Up: up}, 10*time.Second)
	if err != nil {
		return controlError(err)
	}
	return nil
}

var errNoMAC = errors.New("invalid argument: setlink needs the interface's MAC address")

var _ local.DeviceEngine = Engine{}
