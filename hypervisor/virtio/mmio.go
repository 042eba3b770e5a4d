package virtio

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"vsh/hypervisor/bus"
	"vsh/hypervisor/memory"
)

// virtio-mmio register offsets (virtio 1.1 §4.2.2).
const (
	RegMagicValue        = 0x000
	RegVersion           = 0x004
	RegDeviceID          = 0x008
	RegVendorID          = 0x00c
	RegDeviceFeatures    = 0x010
	RegDeviceFeaturesSel = 0x014
	RegDriverFeatures    = 0x020
	RegDriverFeaturesSel = 0x024
	RegQueueSel          = 0x030
	RegQueueNumMax       = 0x034
	RegQueueNum          = 0x038
	RegQueueReady        = 0x044
	RegQueueNotify       = 0x050
	RegInterruptStatus   = 0x060
	RegInterruptACK      = 0x064
	RegStatus            = 0x070
	RegQueueDescLow      = 0x080
	RegQueueDescHigh     = 0x084
	RegQueueDriverLow    = 0x090
	RegQueueDriverHigh   = 0x094
	RegQueueDeviceLow    = 0x0a0
	RegQueueDeviceHigh   = 0x0a4
	RegConfigGeneration  = 0x0fc
	RegConfig            = 0x100
)

// MMIO identification values.
const (
	MagicValue = 0x74726976 // "virt"
	Version    = 2
	// VendorID is the vendor reported to the guest ("vsh" would be a
	// registered ID; zero is what Firecracker reports).
	VendorID = 0
)

// Device status bits.
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 0x40
	StatusFailed      = 0x80
)

// Interrupt status bits.
const (
	InterruptUsedBuffer   = 1
	InterruptConfigChange = 2
)

// transportFeatures are the ring features every device gets.
const transportFeatures = FeatureVersion1 | FeatureRingEventIdx | FeatureRingIndirectDesc

// CmdlineDevice formats the Linux kernel parameter that announces a
// virtio-mmio device of size bytes at base on interrupt line irq, e.g.
// "virtio_mmio.device=4K@0xd0000000:5".
func CmdlineDevice(size, base uint64, irq uint32) string {
	s := fmt.Sprintf("%d", size)
	switch {
	case size >= 1<<20 && size%(1<<20) == 0:
		s = fmt.Sprintf("%dM", size>>20)
	case size >= 1<<10 && size%(1<<10) == 0:
		s = fmt.Sprintf("%dK", size>>10)
	}
	return fmt.Sprintf("virtio_mmio.device=%s@%#x:%d", s, base, irq)
}

// MMIO is the virtio-mmio version 2 transport for one device. It implements
// bus.Device; the engine registers it at the device's MMIO window.
type MMIO struct {
	dev Device
	mem *memory.Guest
	irq bus.Interrupt

	// LevelTriggered makes the transport drive irq as a level (high while
	// InterruptStatus is non-zero) instead of pulsing it. Set it before the
	// guest runs.
	LevelTriggered bool

	mu          sync.Mutex
	status      uint32
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	queues      []*Queue

	active     atomic.Bool
	needsReset atomic.Bool
	intStatus  atomic.Uint32
	configGen  atomic.Uint32
	errMu      sync.Mutex
	err        error
}

// NewMMIO returns the transport for dev, which reaches guest memory through
// mem and interrupts the guest through irq.
func NewMMIO(dev Device, mem *memory.Guest, irq bus.Interrupt) *MMIO {
	t := &MMIO{dev: dev, mem: mem, irq: irq}
	for i, max := range dev.QueueMaxSizes() {
		if max > MaxQueueSize {
			max = MaxQueueSize
		}
		q := newQueue(i, max)
		q.reset()
		q.mem = mem
		q.raise = func() { t.interrupt(InterruptUsedBuffer) }
		q.fail = t.fail
		t.queues = append(t.queues, q)
	}
	return t
}

// Device returns the device model behind the transport.
func (t *MMIO) Device() Device { return t.dev }

// Err returns the guest error that put the device in NEEDS_RESET, if any.
func (t *MMIO) Err() error {
	t.errMu.Lock()
	defer t.errMu.Unlock()
	return t.err
}

// Status returns the device status register as the guest sees it.
func (t *MMIO) Status() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statusLocked()
}

func (t *MMIO) statusLocked() uint32 {
	s := t.status
	if t.needsReset.Load() {
		s |= StatusNeedsReset
	}
	return s
}

// NotifyQueue wakes the device for queue index, exactly as a guest write of
// index to QueueNotify does. The engine calls it from an ioeventfd.
func (t *MMIO) NotifyQueue(index int) {
	if !t.active.Load() || index < 0 || index >= len(t.queues) {
		return
	}
	t.queues[index].notify()
}

// ServeQueue is NotifyQueue for a doorbell thread of the engine's own (an
// ioeventfd watcher): that thread may run the queue's handler itself when
// the device goroutine is idle, which saves a wake-up per request. A vCPU
// must call NotifyQueue instead, as the handler may block on I/O.
func (t *MMIO) ServeQueue(index int) {
	if !t.active.Load() || index < 0 || index >= len(t.queues) {
		return
	}
	t.queues[index].serveNow()
}

// Close stops the device.
func (t *MMIO) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
	return nil
}

// interrupt sets bits in InterruptStatus and raises the line.
func (t *MMIO) interrupt(bits uint32) {
	t.intStatus.Or(bits)
	if t.irq == nil {
		return
	}
	if t.LevelTriggered {
		t.irq.SetLevel(true)
	} else {
		t.irq.Trigger()
	}
}

// configChanged is handed to devices as Activation.ConfigChanged.
func (t *MMIO) configChanged() {
	t.configGen.Add(1)
	if t.active.Load() {
		t.interrupt(InterruptConfigChange)
	}
}

// ConfigChanged bumps the configuration generation and, when the driver is
// running, raises the configuration change interrupt. Devices whose config
// changes while inactive call it too.
func (t *MMIO) ConfigChanged() { t.configChanged() }

// fail marks the device NEEDS_RESET and tells the driver.
func (t *MMIO) fail(err error) {
	t.errMu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.errMu.Unlock()
	if !t.needsReset.Swap(true) {
		t.interrupt(InterruptConfigChange)
	}
}

func (t *MMIO) resetLocked() {
	t.active.Store(false)
	t.dev.Reset()
	for _, q := range t.queues {
		q.reset()
	}
	t.status, t.devFeatSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0, 0
	t.intStatus.Store(0)
	t.needsReset.Store(false)
	t.errMu.Lock()
	t.err = nil
	t.errMu.Unlock()
	if t.LevelTriggered && t.irq != nil {
		t.irq.SetLevel(false)
	}
}

func (t *MMIO) offered() uint64 { return t.dev.Features() | transportFeatures }

func (t *MMIO) selected() *Queue {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

// Read handles a guest read of the register window.
func (t *MMIO) Read(offset uint64, data []byte) {
	if offset >= RegConfig {
		t.dev.ReadConfig(offset-RegConfig, data)
		return
	}
	var v uint32
	if len(data) == 4 && offset%4 == 0 {
		v = t.readReg(offset)
	}
	// Registers are 32-bit only; other widths read as zero.
	clear(data)
	if len(data) == 4 {
		binary.LittleEndian.PutUint32(data, v)
	}
}

func (t *MMIO) readReg(offset uint64) uint32 {
	switch offset {
	case RegMagicValue:
		return MagicValue
	case RegVersion:
		return Version
	case RegDeviceID:
		return t.dev.DeviceID()
	case RegVendorID:
		return VendorID
	case RegInterruptStatus:
		return t.intStatus.Load()
	case RegConfigGeneration:
		return t.configGen.Load()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch offset {
	case RegDeviceFeatures:
		if t.devFeatSel < 2 {
			return uint32(t.offered() >> (32 * t.devFeatSel))
		}
	case RegQueueNumMax:
		if q := t.selected(); q != nil {
			return uint32(q.maxSize)
		}
	case RegQueueReady:
		if q := t.selected(); q != nil && q.ready {
			return 1
		}
	case RegStatus:
		return t.statusLocked()
	}
	return 0
}

// Write handles a guest write to the register window.
func (t *MMIO) Write(offset uint64, data []byte) {
	if offset >= RegConfig {
		t.dev.WriteConfig(offset-RegConfig, data)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	switch offset {
	case RegQueueNotify:
		t.NotifyQueue(int(v))
		return
	case RegInterruptACK:
		if t.intStatus.And(^v)&^v == 0 && t.LevelTriggered && t.irq != nil {
			t.irq.SetLevel(false)
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch offset {
	case RegDeviceFeaturesSel:
		t.devFeatSel = v
	case RegDriverFeaturesSel:
		t.drvFeatSel = v
	case RegDriverFeatures:
		if t.status&(StatusFeaturesOK|StatusDriverOK) != 0 || t.drvFeatSel > 1 {
			return
		}
		shift := 32 * t.drvFeatSel
		t.drvFeatures = t.drvFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
	case RegQueueSel:
		t.queueSel = v
	case RegStatus:
		t.writeStatus(v)
	default:
		t.writeQueueReg(offset, v)
	}
}

func (t *MMIO) writeQueueReg(offset uint64, v uint32) {
	q := t.selected()
	if q == nil || t.status&StatusDriverOK != 0 {
		return
	}
	if q.ready && offset != RegQueueReady {
		return // the spec forbids reprogramming an enabled queue
	}
	set := func(p *uint64, high bool) {
		if high {
			*p = *p&0xffffffff | uint64(v)<<32
		} else {
			*p = *p&^0xffffffff | uint64(v)
		}
	}
	switch offset {
	case RegQueueNum:
		q.size = uint16(v)
		if v > uint32(q.maxSize) {
			q.size = 0 // rejected at QueueReady
		}
	case RegQueueReady:
		if v == 0 {
			q.ready = false
			return
		}
		if err := q.validate(t.mem); err != nil {
			t.fail(fmt.Errorf("virtio device %d: %w", t.dev.DeviceID(), err))
			return
		}
		q.ready = true
	case RegQueueDescLow, RegQueueDescHigh:
		set(&q.descAddr, offset == RegQueueDescHigh)
	case RegQueueDriverLow, RegQueueDriverHigh:
		set(&q.availAddr, offset == RegQueueDriverHigh)
	case RegQueueDeviceLow, RegQueueDeviceHigh:
		set(&q.usedAddr, offset == RegQueueDeviceHigh)
	}
}

func (t *MMIO) writeStatus(v uint32) {
	if v == 0 {
		t.resetLocked()
		return
	}
	v &^= StatusNeedsReset
	if v&StatusFeaturesOK != 0 && t.status&StatusFeaturesOK == 0 {
		// Accept the features only if they are a subset of the offer and
		// include VERSION_1; otherwise leave FEATURES_OK clear so the driver
		// sees the refusal.
		if t.drvFeatures&^t.offered() != 0 || t.drvFeatures&FeatureVersion1 == 0 {
			v &^= StatusFeaturesOK
		}
	}
	if v&StatusDriverOK != 0 && t.status&StatusDriverOK == 0 {
		if v&StatusFeaturesOK == 0 {
			v &^= StatusDriverOK
		} else {
			t.status = v
			t.activateLocked()
			return
		}
	}
	t.status = v
}

func (t *MMIO) activateLocked() {
	for _, q := range t.queues {
		q.eventIdx = t.drvFeatures&FeatureRingEventIdx != 0
		q.indirect = t.drvFeatures&FeatureRingIndirectDesc != 0
	}
	t.active.Store(true)
	err := t.dev.Activate(Activation{
		Mem:           t.mem,
		Queues:        t.queues,
		Features:      t.drvFeatures,
		ConfigChanged: t.configChanged,
	})
	if err != nil {
		t.fail(fmt.Errorf("activate virtio device %d: %w", t.dev.DeviceID(), err))
	}
}
