package virtio

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// virtio-net feature bits (virtio 1.1 §5.1.3).
const (
	NetFCsum      = 1 << 0
	NetFGuestCsum = 1 << 1
	NetFMAC       = 1 << 5
	NetFGuestTSO4 = 1 << 7
	NetFGuestTSO6 = 1 << 8
	NetFGuestECN  = 1 << 9
	NetFGuestUFO  = 1 << 10
	NetFHostTSO4  = 1 << 11
	NetFHostTSO6  = 1 << 12
	NetFHostECN   = 1 << 13
	NetFHostUFO   = 1 << 14
	NetFMrgRxbuf  = 1 << 15
	NetFStatus    = 1 << 16
)

// NetStatusLinkUp is the link bit of the config space status field.
const NetStatusLinkUp = 1

// NetHdrSize is the size of the virtio_net_hdr that precedes every frame
// on the queues (virtio 1.x always includes num_buffers), and on a backend
// with NetConfig.VnetHdr set (a tap with IFF_VNET_HDR and TUNSETVNETHDRSZ
// of NetHdrSize).
const NetHdrSize = 12

// virtio_net_hdr flags and GSO types.
const (
	netHdrFNeedsCsum = 1
	netHdrFDataValid = 2

	netGSONone  = 0
	netGSOTCPv4 = 1
	netGSOUDP   = 3
	netGSOTCPv6 = 4
	netGSOECN   = 0x80
)

const (
	netQueueSize = 256
	netCfgSize   = 10 // mac[6], status u16, max_virtqueue_pairs u16
	// netMaxFrame bounds one frame: a 64 KiB GSO packet plus Ethernet and
	// VLAN headers, with room to spare.
	netMaxFrame = 65536 + 64
	netBufSize  = NetHdrSize + netMaxFrame
	// netIdleRetry is how long the receive loop waits after a backend error
	// that is neither a timeout nor a closed backend, so a misbehaving
	// backend cannot make it spin.
	netIdleRetry = 10 * time.Millisecond
)

// NetBackend carries frames between a virtio-net device and the host: a
// network.Tap, or an in-memory backend in tests. Each Read returns one
// frame and each Write sends one; when NetConfig.VnetHdr is set, every
// frame is preceded by a NetHdrSize-byte virtio_net_hdr in both directions.
type NetBackend interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	// SetReadDeadline makes a blocked or later Read fail with an error
	// matching os.ErrDeadlineExceeded once t passes; the zero time clears
	// it. The device uses it to stop its receive goroutine.
	SetReadDeadline(t time.Time) error
}

// NetOffloader is implemented by backends that must be told which
// offloads the guest accepts on receive (a tap: TUNSETOFFLOAD). flags are
// unix.TUN_F_* bits. Without it the backend must not hand the device
// partially checksummed or GSO frames the guest did not ask for; the device
// drops any it gets.
type NetOffloader interface {
	SetOffload(flags int) error
}

// NetConfig configures a virtio-net device.
type NetConfig struct {
	MAC [6]byte
	// VnetHdr says the backend's frames carry a virtio_net_hdr; it enables
	// the checksum and segmentation offloads.
	VnetHdr bool
	// LinkDown starts the device with its link down (<link state='down'/>).
	LinkDown bool
}

// NetStats are a device's counters, from the guest's point of view as
// virsh domifstat reports them: rx is host to guest, tx guest to host.
// Bytes count Ethernet frames without the virtio header.
type NetStats struct {
	RxBytes, RxPackets, RxErrs, RxDrops uint64
	TxBytes, TxPackets, TxErrs, TxDrops uint64
}

// Net is a virtio-net device with one receive and one transmit queue and no
// control queue. It offers MAC, STATUS and MRG_RXBUF, and with a vnet
// header backend CSUM, GUEST_CSUM and the TSO4/TSO6/ECN/UFO offloads in
// both directions. Receive runs on a goroutine that reads the backend
// while the guest has posted buffers (frames wait in the backend, for a tap
// in the kernel's queue, while it has not); transmit runs on a goroutine
// woken by queue notifications. Neither runs on a vCPU thread.
type Net struct {
	backend NetBackend
	cfg     NetConfig

	link atomic.Bool

	mu            sync.Mutex
	configChanged func() // set while active

	rxBytes, rxPackets, rxErrs, rxDrops atomic.Uint64
	txBytes, txPackets, txErrs, txDrops atomic.Uint64

	w workers
}

// NewNet returns a virtio-net device on backend.
func NewNet(backend NetBackend, cfg NetConfig) *Net {
	n := &Net{backend: backend, cfg: cfg}
	n.link.Store(!cfg.LinkDown)
	return n
}

// MAC returns the device's MAC address.
func (n *Net) MAC() [6]byte { return n.cfg.MAC }

// LinkUp reports the link state the guest sees.
func (n *Net) LinkUp() bool { return n.link.Load() }

// SetLink sets the link state (virsh domif-setlink) and raises the
// configuration change interrupt when the driver is running. While the link
// is down, frames in either direction are dropped and counted.
func (n *Net) SetLink(up bool) {
	if n.link.Swap(up) == up {
		return
	}
	n.mu.Lock()
	notify := n.configChanged
	n.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// Stats returns the device's counters.
func (n *Net) Stats() NetStats {
	return NetStats{
		RxBytes: n.rxBytes.Load(), RxPackets: n.rxPackets.Load(), RxErrs: n.rxErrs.Load(), RxDrops: n.rxDrops.Load(),
		TxBytes: n.txBytes.Load(), TxPackets: n.txPackets.Load(), TxErrs: n.txErrs.Load(), TxDrops: n.txDrops.Load(),
	}
}

// DeviceID implements Device.
func (n *Net) DeviceID() uint32 { return IDNet }

// Features implements Device.
func (n *Net) Features() uint64 {
	f := uint64(NetFMAC | NetFStatus | NetFMrgRxbuf)
	if n.cfg.VnetHdr {
		f |= NetFCsum | NetFGuestCsum |
			NetFGuestTSO4 | NetFGuestTSO6 | NetFGuestECN | NetFGuestUFO |
			NetFHostTSO4 | NetFHostTSO6 | NetFHostECN | NetFHostUFO
	}
	return f
}

// QueueMaxSizes implements Device: receiveq1 and transmitq1.
func (n *Net) QueueMaxSizes() []uint16 { return []uint16{netQueueSize, netQueueSize} }

// ReadConfig implements Device: mac, status, max_virtqueue_pairs.
func (n *Net) ReadConfig(offset uint64, data []byte) {
	var cfg [netCfgSize]byte
	copy(cfg[:6], n.cfg.MAC[:])
	if n.link.Load() {
		binary.LittleEndian.PutUint16(cfg[6:], NetStatusLinkUp)
	}
	binary.LittleEndian.PutUint16(cfg[8:], 1)
	readConfigBytes(cfg[:], offset, data)
}

// WriteConfig implements Device. The MAC is read-only once VERSION_1 is
// negotiated (virtio 1.1 §5.1.4), so writes are ignored.
func (n *Net) WriteConfig(offset uint64, data []byte) {}

// Activate implements Device.
func (n *Net) Activate(a Activation) error {
	rx, tx := a.Queues[0], a.Queues[1]
	if !rx.Ready() || !tx.Ready() {
		return errors.New("virtio-net receive and transmit queues not enabled")
	}
	if o, ok := n.backend.(NetOffloader); ok && n.cfg.VnetHdr {
		if err := o.SetOffload(tunOffloads(a.Features)); err != nil {
			return err
		}
	}
	n.mu.Lock()
	n.configChanged = a.ConfigChanged
	n.mu.Unlock()
	n.backend.SetReadDeadline(time.Time{})
	n.w.start(func(stop <-chan struct{}) { n.serveRX(stop, rx, a.Features) })
	n.w.start(func(stop <-chan struct{}) {
		txBuf := make([]byte, netBufSize)
		serveQueue(stop, tx, func() error { return n.transmit(tx, a.Features, txBuf) })
	})
	return nil
}

// Reset implements Device.
func (n *Net) Reset() {
	n.mu.Lock()
	n.configChanged = nil
	n.mu.Unlock()
	// Wake a receive goroutine blocked in Read; it sees stop once
	// stopAll closes it.
	n.backend.SetReadDeadline(time.Unix(1, 0))
	n.w.stopAll()
	n.backend.SetReadDeadline(time.Time{})
}

// tunOffloads maps the negotiated guest receive features to TUN_F_* flags.
func tunOffloads(f uint64) int {
	if f&NetFGuestCsum == 0 {
		return 0
	}
	flags := unix.TUN_F_CSUM
	if f&NetFGuestTSO4 != 0 {
		flags |= unix.TUN_F_TSO4
	}
	if f&NetFGuestTSO6 != 0 {
		flags |= unix.TUN_F_TSO6
	}
	if f&NetFGuestECN != 0 && f&(NetFGuestTSO4|NetFGuestTSO6) != 0 {
		flags |= unix.TUN_F_TSO_ECN
	}
	if f&NetFGuestUFO != 0 {
		flags |= unix.TUN_F_UFO
	}
	return flags
}

// hdrAllowed checks a virtio_net_hdr against the features negotiated for
// its direction: a frame asking for an offload the other side did not
// accept is dropped rather than passed on.
func hdrAllowed(hdr []byte, f uint64, csum, tso4, tso6, ecn, ufo uint64) bool {
	if hdr[0]&netHdrFNeedsCsum != 0 && f&csum == 0 {
		return false
	}
	gso := hdr[1]
	if gso&netGSOECN != 0 && f&ecn == 0 {
		return false
	}
	switch gso &^ netGSOECN {
	case netGSONone:
		return gso == netGSONone
	case netGSOTCPv4:
		return f&tso4 != 0
	case netGSOTCPv6:
		return f&tso6 != 0
	case netGSOUDP:
		return f&ufo != 0
	}
	return false
}

// transmit sends every available chain to the backend.
func (n *Net) transmit(q *Queue, f uint64, buf []byte) error {
	sent := false
	for {
		ch, err := q.Pop()
		if err != nil {
			return err
		}
		if ch == nil {
			break
		}
		n.send(ch, f, buf)
		if err := q.Push(ch.Head, 0); err != nil {
			return err
		}
		sent = true
	}
	if sent {
		return q.Signal()
	}
	return nil
}

// send writes one chain's frame to the backend, counting what happens.
func (n *Net) send(ch *Chain, f uint64, buf []byte) {
	total := ch.ReadableLen()
	if total < NetHdrSize+14 || total > len(buf) {
		n.txErrs.Add(1)
		return
	}
	ch.ReadAt(buf[:total], 0)
	if !hdrAllowed(buf, f, NetFCsum, NetFHostTSO4, NetFHostTSO6, NetFHostECN, NetFHostUFO) {
		n.txErrs.Add(1)
		return
	}
	if !n.link.Load() {
		n.txDrops.Add(1)
		return
	}
	frame := buf[:total]
	if !n.cfg.VnetHdr {
		frame = buf[NetHdrSize:total]
	} else {
		binary.LittleEndian.PutUint16(frame[10:], 0)
	}
	if _, err := n.backend.Write(frame); err != nil {
		n.txErrs.Add(1)
		return
	}
	n.txPackets.Add(1)
	n.txBytes.Add(uint64(total - NetHdrSize))
}

// waitChain pops the next receive chain, waiting for the driver to post
// one; nil means the device is stopping or the queue broke.
func waitChain(stop <-chan struct{}, q *Queue) *Chain {
	for {
		ch, err := q.Pop()
		if err != nil {
			return nil
		}
		if ch != nil {
			return ch
		}
		select {
		case <-stop:
			return nil
		case <-q.Kick():
		}
	}
}

// serveRX moves frames from the backend into receive buffers.
func (n *Net) serveRX(stop <-chan struct{}, q *Queue, f uint64) {
	buf := make([]byte, netBufSize)
	var ch *Chain // a posted buffer held for the next frame
	for {
		if ch == nil {
			if ch = waitChain(stop, q); ch == nil {
				return
			}
		}
		m, ok := n.readFrame(stop, buf)
		if !ok {
			return
		}
		if m < 0 {
			continue
		}
		frame := buf[:m]
		hdr := frame[:NetHdrSize]
		if f&NetFGuestCsum == 0 {
			hdr[0] = 0 // DATA_VALID only means something with GUEST_CSUM
		}
		if !n.link.Load() || !hdrAllowed(hdr, f, NetFGuestCsum, NetFGuestTSO4, NetFGuestTSO6, NetFGuestECN, NetFGuestUFO) {
			n.rxDrops.Add(1)
			continue
		}
		var err error
		if f&NetFMrgRxbuf != 0 {
			ch, err = n.deliverMerged(stop, q, ch, frame)
		} else {
			ch, err = n.deliver(q, ch, frame)
		}
		if err != nil {
			return
		}
	}
}

// readFrame reads one frame with its header into buf. It returns the
// length (-1 for a frame to skip) and false when the device is stopping.
func (n *Net) readFrame(stop <-chan struct{}, buf []byte) (int, bool) {
	for {
		var m int
		var err error
		if n.cfg.VnetHdr {
			m, err = n.backend.Read(buf)
		} else {
			m, err = n.backend.Read(buf[NetHdrSize:])
			if err == nil {
				clear(buf[:NetHdrSize])
				m += NetHdrSize
			}
		}
		switch {
		case err == nil && m < NetHdrSize+14:
			n.rxErrs.Add(1)
			return -1, true
		case err == nil:
			return m, true
		case errors.Is(err, os.ErrDeadlineExceeded):
			select {
			case <-stop:
				return 0, false
			default:
			}
		case errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF):
			// The backend is gone: nothing more will arrive.
			<-stop
			return 0, false
		default:
			n.rxErrs.Add(1)
			select {
			case <-stop:
				return 0, false
			case <-time.After(netIdleRetry):
			}
		}
	}
}

// deliver puts frame into one chain (no MRG_RXBUF). A frame larger than
// the chain is dropped and the chain returned empty, so a guest that posts
// small buffers cannot stall reception.
func (n *Net) deliver(q *Queue, ch *Chain, frame []byte) (*Chain, error) {
	if ch.WritableLen() < len(frame) {
		n.rxDrops.Add(1)
		if err := q.Push(ch.Head, 0); err != nil {
			return nil, err
		}
		return nil, q.Signal()
	}
	binary.LittleEndian.PutUint16(frame[10:], 1)
	ch.WriteAt(frame, 0)
	if err := q.Push(ch.Head, uint32(len(frame))); err != nil {
		return nil, err
	}
	n.rxPackets.Add(1)
	n.rxBytes.Add(uint64(len(frame) - NetHdrSize))
	return nil, q.Signal()
}

// deliverMerged spreads frame over as many chains as it needs
// (MRG_RXBUF), waiting for the driver to post more when it runs out. The
// first chain must hold the whole header. A frame that would need more
// chains than the queue holds is dropped.
func (n *Net) deliverMerged(stop <-chan struct{}, q *Queue, first *Chain, frame []byte) (*Chain, error) {
	type used struct {
		head uint16
		n    uint32
	}
	var parts []used
	var head *Chain
	off := 0
	ch := first
	for off < len(frame) {
		if ch == nil {
			if len(parts) >= int(q.Size()) {
				break
			}
			if ch = waitChain(stop, q); ch == nil {
				return nil, errors.New("stopped")
			}
		}
		if head == nil && ch.WritableLen() < NetHdrSize {
			// Unusable as a first buffer: hand it back empty.
			n.rxErrs.Add(1)
			if err := q.Push(ch.Head, 0); err != nil {
				return nil, err
			}
			ch = nil
			continue
		}
		w := ch.WriteAt(frame[off:], 0)
		if head == nil {
			head = ch
		}
		parts = append(parts, used{ch.Head, uint32(w)})
		off += w
		ch = nil
	}
	if off < len(frame) {
		n.rxDrops.Add(1)
		for _, p := range parts {
			if err := q.Push(p.head, 0); err != nil {
				return nil, err
			}
		}
		return nil, q.Signal()
	}
	var nb [2]byte
	binary.LittleEndian.PutUint16(nb[:], uint16(len(parts)))
	head.WriteAt(nb[:], 10)
	for _, p := range parts {
		if err := q.Push(p.head, p.n); err != nil {
			return nil, err
		}
	}
	n.rxPackets.Add(1)
	n.rxBytes.Add(uint64(len(frame) - NetHdrSize))
	return nil, q.Signal()
}
