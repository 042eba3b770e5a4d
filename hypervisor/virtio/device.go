// Package virtio implements paravirtual devices for the vsh engine: the
// virtio-mmio (version 2) transport, split virtqueues, and the block, entropy,
// balloon, console and vsock devices.
//
// The engine registers an *MMIO transport as a bus.Device for each device
// and announces it to Linux with CmdlineDevice. Guest register accesses run
// on vCPU threads; device I/O runs on goroutines owned by each device, woken
// by queue notifications. Everything a guest hands a device is validated:
// a bad ring marks the device NEEDS_RESET instead of crashing the VMM.
package virtio

import (
	"sync"

	"vsh/hypervisor/memory"
)

// Device IDs (virtio 1.1 §5).
const (
	IDNet     = 1
	IDBlock   = 2
	IDConsole = 3
	IDRNG     = 4
	IDBalloon = 5
	IDVsock   = 19
)

// Transport-level feature bits.
const (
	FeatureRingIndirectDesc = 1 << 28
	FeatureRingEventIdx     = 1 << 29
	FeatureVersion1         = 1 << 32
)

// Device is a virtio device model as the transport drives it.
type Device interface {
	// DeviceID is the virtio device type (IDBlock, ...).
	DeviceID() uint32
	// Features are the device-specific feature bits offered; the transport
	// adds VERSION_1, EVENT_IDX and INDIRECT_DESC.
	Features() uint64
	// QueueMaxSizes gives the maximum size of each queue; its length is the
	// number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig and WriteConfig access the device configuration space;
	// offset is relative to its start. Out-of-range bytes read as zero.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver set DRIVER_OK. Queues the
	// driver did not enable are present but not Ready.
	Activate(a Activation) error
	// Reset stops the device's goroutines and waits for them, returning it
	// to its initial state. It is called on driver reset and on Close, and
	// may be called on a device that is not active.
	Reset()
}

// Activation is what a device receives when the driver is ready.
type Activation struct {
	Mem      *memory.Guest
	Queues   []*Queue
	Features uint64 // negotiated features
	// ConfigChanged bumps ConfigGeneration and raises the configuration
	// change interrupt.
	ConfigChanged func()
}

// workers runs a device's goroutines and stops them on request.
type workers struct {
	mu   sync.Mutex
	stop chan struct{}
	wg   sync.WaitGroup
}

// start launches fn on a new goroutine; fn must return once stop is closed.
func (w *workers) start(fn func(stop <-chan struct{})) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop == nil {
		w.stop = make(chan struct{})
	}
	w.wg.Add(1)
	stop := w.stop
	go func() {
		defer w.wg.Done()
		fn(stop)
	}()
}

// stopAll closes the stop channel and waits for every goroutine.
func (w *workers) stopAll() {
	w.mu.Lock()
	stop := w.stop
	w.stop = nil
	w.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	w.wg.Wait()
}

// serveQueue calls handle each time q is notified, until stop closes or the
// queue breaks. While it runs, a doorbell thread may run handle itself
// (Queue.serveNow); the two never overlap, and serveQueue returns only
// once no inline call is in progress.
func serveQueue(stop <-chan struct{}, q *Queue, handle func() error) {
	q.inline.Store(&handle)
	defer func() {
		q.inline.Store(nil)
		q.serving.Lock() // wait out an inline call
		q.serving.Unlock()
	}()
	for {
		q.serving.Lock()
		err := handle()
		q.serving.Unlock()
		if err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-q.Kick():
		}
	}
}

func putLE(dst []byte, v uint64) {
	for i := range dst {
		dst[i] = byte(v >> (8 * i))
	}
}

func getLE(src []byte) uint64 {
	var v uint64
	for i := len(src) - 1; i >= 0; i-- {
		v = v<<8 | uint64(src[i])
	}
	return v
}

// readConfigBytes copies the bytes of cfg at offset into data, zero-filling
// anything beyond cfg.
func readConfigBytes(cfg []byte, offset uint64, data []byte) {
	for i := range data {
		o := offset + uint64(i)
		if o < uint64(len(cfg)) {
			data[i] = cfg[o]
		} else {
			data[i] = 0
		}
	}
}
