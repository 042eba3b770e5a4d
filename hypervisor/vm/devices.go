package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"vsh/hypervisor/bus"
	"vsh/hypervisor/kvm"
	"vsh/hypervisor/memory"
)

// GSIs handed out to virtio devices; lines used by legacy PC devices in
// that range (8 RTC, 9 the ACPI SCI, which the MADT declares
// level-triggered, 12 PS/2 mouse) are skipped.
const (
	firstDynamicGSI = 5
	lastGSI         = 23
)

var legacyGSIs = map[uint32]bool{8: true, 9: true, 12: true}

// MMIOSlot is a virtio-mmio window with its interrupt.
type MMIOSlot struct {
	Name      string
	Base      uint64
	Size      uint64
	IRQ       uint32
	Interrupt bus.Interrupt
}

// CmdlineArg returns the kernel parameter announcing the slot to a Linux
// guest without ACPI or device tree (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES).
func (s MMIOSlot) CmdlineArg() string {
	return fmt.Sprintf("virtio_mmio.device=%dK@%#x:%d", s.Size>>10, s.Base, s.IRQ)
}

// DeviceManager is the one place that assigns guest addresses and
// interrupt lines: port ranges, MMIO windows, GSIs, and ioeventfds on
// device doorbells. Device models register through it; it is safe for
// concurrent use, though registration normally happens before Start.
type DeviceManager struct {
	vm   *kvm.VM
	pio  bus.Bus
	mmio bus.Bus

	ioeventfd bool
	ram       []memory.Region

	mu       sync.Mutex
	irqs     map[uint32]string
	slots    []MMIOSlot
	watchers []*watcher
	closed   bool
}

func newDeviceManager(v *kvm.VM, ioeventfd bool, ram []memory.Region) *DeviceManager {
	return &DeviceManager{vm: v, ioeventfd: ioeventfd, ram: ram, irqs: map[uint32]string{}}
}

// PortBus returns the I/O-port bus the vCPUs dispatch IN/OUT exits to.
func (d *DeviceManager) PortBus() *bus.Bus { return &d.pio }

// MMIOBus returns the MMIO bus the vCPUs dispatch MMIO exits to.
func (d *DeviceManager) MMIOBus() *bus.Bus { return &d.mmio }

// AddPort maps I/O ports [base, base+size) to dev, for devices at fixed
// PC addresses (COM1 at 0x3f8, i8042 at 0x60, CMOS at 0x70, ...).
func (d *DeviceManager) AddPort(name string, base, size uint16, dev bus.Device) error {
	if uint32(base)+uint32(size) > 0x10000 {
		return fmt.Errorf("register %s: ports %#x+%#x beyond 0xffff", name, base, size)
	}
	return d.pio.Register(name, uint64(base), uint64(size), dev)
}

// AddMMIO maps [base, base+size) of guest-physical space to dev at a fixed
// address. It refuses ranges overlapping guest RAM or the virtio window.
func (d *DeviceManager) AddMMIO(name string, base, size uint64, dev bus.Device) error {
	end := base + size
	if end < base {
		return fmt.Errorf("register %s at %#x+%#x: range wraps around", name, base, size)
	}
	for _, r := range d.ram {
		if base < r.GPA+uint64(len(r.Host)) && r.GPA < end {
			return fmt.Errorf("register %s at %#x+%#x: overlaps guest RAM at %#x", name, base, size, r.GPA)
		}
	}
	if base < VirtioMMIOBase+VirtioMMIOMaxSlots*VirtioMMIOSlotSize && end > VirtioMMIOBase {
		return fmt.Errorf("register %s at %#x+%#x: overlaps the virtio-mmio window", name, base, size)
	}
	return d.mmio.Register(name, base, size, dev)
}

// ClaimIRQ reserves a fixed interrupt line (a legacy device's ISA IRQ,
// e.g. 4 for COM1) and returns it as a bus.Interrupt.
func (d *DeviceManager) ClaimIRQ(name string, gsi uint32) (bus.Interrupt, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gsi > lastGSI {
		return nil, fmt.Errorf("claim IRQ %d for %s: the IOAPIC has lines 0-%d", gsi, name, lastGSI)
	}
	if owner, ok := d.irqs[gsi]; ok {
		return nil, fmt.Errorf("claim IRQ %d for %s: already used by %s", gsi, name, owner)
	}
	d.irqs[gsi] = name
	return &irqLine{vm: d.vm, gsi: gsi}, nil
}

// AllocIRQ hands out the next free GSI in 5..23 (skipping 8, 9 and 12).
func (d *DeviceManager) AllocIRQ(name string) (uint32, bus.Interrupt, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.allocIRQLocked(name)
}

func (d *DeviceManager) allocIRQLocked(name string) (uint32, bus.Interrupt, error) {
	for gsi := uint32(firstDynamicGSI); gsi <= lastGSI; gsi++ {
		if _, used := d.irqs[gsi]; used || legacyGSIs[gsi] {
			continue
		}
		d.irqs[gsi] = name
		return gsi, &irqLine{vm: d.vm, gsi: gsi}, nil
	}
	return 0, nil, fmt.Errorf("allocate an IRQ for %s: all of GSIs %d-%d are in use", name, firstDynamicGSI, lastGSI)
}

// AddVirtioMMIO gives dev the next virtio-mmio slot (4 KiB from
// 0xd0000000) and the next free GSI, and maps it on the MMIO bus.
func (d *DeviceManager) AddVirtioMMIO(name string, dev bus.Device) (MMIOSlot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.slots) >= VirtioMMIOMaxSlots {
		return MMIOSlot{}, fmt.Errorf("add %s: all %d virtio-mmio slots are in use", name, VirtioMMIOMaxSlots)
	}
	base := uint64(VirtioMMIOBase + len(d.slots)*VirtioMMIOSlotSize)
	gsi, irq, err := d.allocIRQLocked(name)
	if err != nil {
		return MMIOSlot{}, err
	}
	if err := d.mmio.Register(name, base, VirtioMMIOSlotSize, dev); err != nil {
		delete(d.irqs, gsi)
		return MMIOSlot{}, err
	}
	s := MMIOSlot{Name: name, Base: base, Size: VirtioMMIOSlotSize, IRQ: gsi, Interrupt: irq}
	d.slots = append(d.slots, s)
	return s, nil
}

// VirtioSlots returns the assigned virtio-mmio slots in address order.
func (d *DeviceManager) VirtioSlots() []MMIOSlot {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := append([]MMIOSlot(nil), d.slots...)
	sort.Slice(s, func(i, j int) bool { return s[i].Base < s[j].Base })
	return s
}

// CmdlineArgs returns the virtio_mmio.device= parameters for every slot.
func (d *DeviceManager) CmdlineArgs() []string {
	var args []string
	for _, s := range d.VirtioSlots() {
		args = append(args, s.CmdlineArg())
	}
	return args
}

// WatchWrite calls fn (on its own goroutine) whenever the guest writes
// value, as a len-byte access, to guest-physical addr — a virtqueue
// doorbell. It uses an ioeventfd, so the write never leaves the kernel's
// fast path. It returns false, with no error, when ioeventfds are not
// available: the write then reaches the device as an ordinary MMIO exit,
// which the device must handle anyway.
func (d *DeviceManager) WatchWrite(addr uint64, length uint32, value uint64, fn func()) (bool, error) {
	if !d.ioeventfd {
		return false, nil
	}
	// Blocking: the watcher's thread sleeps in read(2) and runs fn as soon
	// as the guest rings, without a trip through the runtime's poller.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return false, fmt.Errorf("ioeventfd for %#x: eventfd: %w", addr, err)
	}
	req := kvm.IOEventFD{Addr: addr, Len: length, FD: int32(efd), Datamatch: value, Flags: kvm.IOEventFDFlagDatamatch}
	if err := d.vm.IOEventFD(req); err != nil {
		unix.Close(efd)
		return false, fmt.Errorf("ioeventfd for %#x: %w", addr, err)
	}
	w := &watcher{req: req, fd: efd, done: make(chan struct{})}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		unix.Close(efd)
		return false, errors.New("ioeventfd: machine closed")
	}
	d.watchers = append(d.watchers, w)
	d.mu.Unlock()
	go w.loop(fn)
	return true, nil
}

// close stops the ioeventfd watchers.
func (d *DeviceManager) close() {
	d.mu.Lock()
	ws := d.watchers
	d.watchers = nil
	d.closed = true
	d.mu.Unlock()
	for _, w := range ws {
		req := w.req
		req.Flags |= kvm.IOEventFDFlagDeassign
		_ = d.vm.IOEventFD(req)
		w.stop()
	}
}

// watcher turns one ioeventfd's wake-ups into calls.
type watcher struct {
	req     kvm.IOEventFD
	fd      int
	stopped atomic.Bool
	done    chan struct{}
}

func (w *watcher) loop(fn func()) {
	defer close(w.done)
	var buf [8]byte
	for {
		_, err := unix.Read(w.fd, buf[:])
		if w.stopped.Load() {
			return
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		if binary.LittleEndian.Uint64(buf[:]) > 0 {
			fn()
		}
	}
}

// stop ends the loop: closing an fd does not wake a read(2) blocked on
// it, so stop rings the eventfd itself, waits, then closes it.
func (w *watcher) stop() {
	w.stopped.Store(true)
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(w.fd, one[:])
	<-w.done
	unix.Close(w.fd)
}

// irqLine is a GSI of the in-kernel irqchip driven with KVM_IRQ_LINE.
type irqLine struct {
	vm  *kvm.VM
	gsi uint32
}

// Trigger pulses the line, which is how an edge-triggered interrupt (ISA
// IRQs, virtio-mmio) is raised.
func (l *irqLine) Trigger() error {
	if err := l.vm.IRQLine(l.gsi, true); err != nil {
		return fmt.Errorf("raise IRQ %d: %w", l.gsi, err)
	}
	if err := l.vm.IRQLine(l.gsi, false); err != nil {
		return fmt.Errorf("lower IRQ %d: %w", l.gsi, err)
	}
	return nil
}

// SetLevel drives the line high or low.
func (l *irqLine) SetLevel(high bool) error {
	if err := l.vm.IRQLine(l.gsi, high); err != nil {
		return fmt.Errorf("set IRQ %d level: %w", l.gsi, err)
	}
	return nil
}
