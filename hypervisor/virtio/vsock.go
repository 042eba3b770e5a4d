package virtio

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// vsock packet operations (virtio 1.1 §5.10.6).
const (
	VsockOpInvalid       = 0
	VsockOpRequest       = 1
	VsockOpResponse      = 2
	VsockOpRST           = 3
	VsockOpShutdown      = 4
	VsockOpRW            = 5
	VsockOpCreditUpdate  = 6
	VsockOpCreditRequest = 7
)

// vsock constants.
const (
	VsockHostCID        = 2
	VsockTypeStream     = 1
	VsockShutdownRecv   = 1
	VsockShutdownSend   = 2
	VsockHeaderSize     = 44
	vsockQueueSize      = 256
	vsockMaxPayload     = 64 << 10
	vsockBufAlloc       = 256 << 10 // what the host side buffers per connection
	vsockHostPortBase   = 1 << 30   // local ports for host-initiated connections
	vsockMaxConnections = 1024
)

// VsockHeader is the virtio-vsock packet header.
type VsockHeader struct {
	SrcCID, DstCID   uint64
	SrcPort, DstPort uint32
	Len              uint32
	Type, Op         uint16
	Flags            uint32
	BufAlloc, FwdCnt uint32
}

// ParseVsockHeader decodes a header from the first 44 bytes of b.
func ParseVsockHeader(b []byte) (VsockHeader, error) {
	if len(b) < VsockHeaderSize {
		return VsockHeader{}, fmt.Errorf("vsock header needs %d bytes, have %d", VsockHeaderSize, len(b))
	}
	return VsockHeader{
		SrcCID: binary.LittleEndian.Uint64(b[0:]), DstCID: binary.LittleEndian.Uint64(b[8:]),
		SrcPort: binary.LittleEndian.Uint32(b[16:]), DstPort: binary.LittleEndian.Uint32(b[20:]),
		Len:  binary.LittleEndian.Uint32(b[24:]),
		Type: binary.LittleEndian.Uint16(b[28:]), Op: binary.LittleEndian.Uint16(b[30:]),
		Flags:    binary.LittleEndian.Uint32(b[32:]),
		BufAlloc: binary.LittleEndian.Uint32(b[36:]), FwdCnt: binary.LittleEndian.Uint32(b[40:]),
	}, nil
}

// Marshal encodes the header into 44 bytes.
func (h VsockHeader) Marshal() []byte {
	b := make([]byte, VsockHeaderSize)
	binary.LittleEndian.PutUint64(b[0:], h.SrcCID)
	binary.LittleEndian.PutUint64(b[8:], h.DstCID)
	binary.LittleEndian.PutUint32(b[16:], h.SrcPort)
	binary.LittleEndian.PutUint32(b[20:], h.DstPort)
	binary.LittleEndian.PutUint32(b[24:], h.Len)
	binary.LittleEndian.PutUint16(b[28:], h.Type)
	binary.LittleEndian.PutUint16(b[30:], h.Op)
	binary.LittleEndian.PutUint32(b[32:], h.Flags)
	binary.LittleEndian.PutUint32(b[36:], h.BufAlloc)
	binary.LittleEndian.PutUint32(b[40:], h.FwdCnt)
	return b
}

type vsockKey struct{ local, peer uint32 }

type vsockState int

const (
	vsockConnecting vsockState = iota // host-initiated, REQUEST sent
	vsockEstablished
	vsockClosing // host side closed, SHUTDOWN sent, waiting for RST
)

// vsockConn is one stream between a guest port and a host Unix socket.
type vsockConn struct {
	key   vsockKey
	sock  net.Conn
	state vsockState

	// Guest to host: bytes received and not yet written to sock, after
	// hello (the "OK <port>\n" answer, which is not guest data).
	hello    []byte
	wbuf     []byte
	fwdCnt   uint32 // bytes written to sock
	fwdSent  uint32 // fwdCnt last told to the guest
	sendDone bool   // guest shut down its sending side

	// Host to guest.
	txCnt         uint32 // bytes queued for the guest
	peerBufAlloc  uint32
	peerFwdCnt    uint32
	credit        chan struct{} // peer credit grew or the conn closed
	wready        chan struct{} // wbuf grew or the conn closed
	closed        bool
	readerStarted bool
}

// peerFree is how many bytes the guest can still take.
func (c *vsockConn) peerFree() uint32 {
	inflight := c.txCnt - c.peerFwdCnt
	alloc := min(c.peerBufAlloc, vsockBufAlloc)
	if inflight >= alloc {
		return 0
	}
	return alloc - inflight
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// vsockPacket is a packet waiting for a guest receive buffer.
type vsockPacket struct {
	hdr     VsockHeader
	payload []byte
}

// Vsock is a virtio-vsock device whose host side is a Unix socket, as in
// Firecracker: host processes connect to UDSPath and send "CONNECT <port>\n"
// to reach guest port <port> (answer "OK <hostport>\n"); guest connections
// to host port P are forwarded to the socket UDSPath_P.
type Vsock struct {
	cid      uint64
	udsPath  string
	listener *net.UnixListener

	mu       sync.Mutex
	conns    map[vsockKey]*vsockConn
	rxq      []vsockPacket
	nextPort uint32
	active   bool
	closed   bool
	rxWake   chan struct{}

	connWG  sync.WaitGroup // per-connection goroutines
	w       workers        // rx/tx queue goroutines
	accept  sync.WaitGroup // accept loop and CONNECT handshakes
	pending map[net.Conn]bool
	// early holds host connections made before the guest driver was
	// running; they are offered to the guest when it activates the device.
	early []earlyConn
}

type earlyConn struct {
	sock net.Conn
	port uint32
}

// NewVsock returns a vsock device for guest cid, listening on udsPath for
// host connections.
func NewVsock(cid uint32, udsPath string) (*Vsock, error) {
	if cid <= VsockHostCID || cid == 0xffffffff {
		return nil, fmt.Errorf("vsock guest CID %d is reserved (must be 3 to 4294967294)", cid)
	}
	os.Remove(udsPath) // a stale socket from an earlier run
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: udsPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vsock host socket: %w", err)
	}
	v := &Vsock{
		cid: uint64(cid), udsPath: udsPath, listener: l,
		conns: map[vsockKey]*vsockConn{}, nextPort: vsockHostPortBase,
		pending: map[net.Conn]bool{},
		rxWake:  make(chan struct{}, 1),
	}
	v.accept.Add(1)
	go v.acceptLoop()
	return v, nil
}

// CID returns the guest context ID.
func (v *Vsock) CID() uint32 { return uint32(v.cid) }

// UDSPath returns the host Unix socket path.
func (v *Vsock) UDSPath() string { return v.udsPath }

// DeviceID implements Device.
func (v *Vsock) DeviceID() uint32 { return IDVsock }

// Features implements Device.
func (v *Vsock) Features() uint64 { return 0 }

// QueueMaxSizes implements Device: rx, tx, event.
func (v *Vsock) QueueMaxSizes() []uint16 {
	return []uint16{vsockQueueSize, vsockQueueSize, vsockQueueSize}
}

// ReadConfig implements Device: guest_cid.
func (v *Vsock) ReadConfig(offset uint64, data []byte) {
	var cfg [8]byte
	binary.LittleEndian.PutUint64(cfg[:], v.cid)
	readConfigBytes(cfg[:], offset, data)
}

// WriteConfig implements Device; the configuration is read-only.
func (v *Vsock) WriteConfig(offset uint64, data []byte) {}

// Activate implements Device.
func (v *Vsock) Activate(a Activation) error {
	rx, tx := a.Queues[0], a.Queues[1]
	if !rx.Ready() || !tx.Ready() {
		return fmt.Errorf("virtio-vsock rx and tx queues not enabled")
	}
	v.mu.Lock()
	v.active = true
	for _, e := range v.early {
		v.requestLocked(e.sock, e.port)
	}
	v.early = nil
	v.mu.Unlock()
	v.w.start(func(stop <-chan struct{}) { v.serveRX(stop, rx) })
	v.w.start(func(stop <-chan struct{}) {
		serveQueue(stop, tx, func() error { return v.transmit(tx) })
	})
	return nil
}

// Reset implements Device: every connection is dropped, as a guest reset
// loses its sockets.
func (v *Vsock) Reset() {
	v.w.stopAll()
	v.mu.Lock()
	v.active = false
	for _, c := range v.conns {
		v.closeConnLocked(c)
	}
	v.rxq = nil
	v.mu.Unlock()
	v.connWG.Wait()
}

// Close stops the device, drops every connection and removes the socket.
func (v *Vsock) Close() error {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	err := v.listener.Close()
	v.mu.Lock()
	for s := range v.pending {
		s.Close()
	}
	for _, e := range v.early {
		e.sock.Close()
	}
	v.early = nil
	v.mu.Unlock()
	v.accept.Wait()
	v.Reset()
	os.Remove(v.udsPath)
	return err
}

func (v *Vsock) acceptLoop() {
	defer v.accept.Done()
	for {
		s, err := v.listener.Accept()
		if err != nil {
			return
		}
		v.mu.Lock()
		if v.closed {
			v.mu.Unlock()
			s.Close()
			return
		}
		v.pending[s] = true
		v.accept.Add(1)
		v.mu.Unlock()
		go func() {
			defer v.accept.Done()
			v.hostConnect(s)
		}()
	}
}

// hostConnect reads "CONNECT <port>\n" from a host process and asks the
// guest for the connection.
func (v *Vsock) hostConnect(s net.Conn) {
	line, err := readLine(s, 64)
	port, perr := parseConnect(line)
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.pending, s)
	if err != nil || perr != nil {
		s.Close()
		return
	}
	if v.closed || len(v.conns)+len(v.early) >= vsockMaxConnections {
		s.Close()
		return
	}
	if !v.active {
		v.early = append(v.early, earlyConn{s, port})
		return
	}
	v.requestLocked(s, port)
}

// requestLocked asks the guest to accept host socket s on guest port port.
func (v *Vsock) requestLocked(s net.Conn, port uint32) {
	local := v.allocPortLocked()
	c := v.newConnLocked(vsockKey{local: local, peer: port}, s, vsockConnecting)
	v.queueLocked(c, VsockOpRequest, 0, nil)
}

// readLine reads one '\n'-terminated line byte by byte, so that no data
// after it is consumed.
func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	var one [1]byte
	for len(b) < max {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", fmt.Errorf("vsock connect line longer than %d bytes", max)
}

func parseConnect(line string) (uint32, error) {
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "CONNECT" {
		return 0, fmt.Errorf("vsock: expected \"CONNECT <port>\", got %q", line)
	}
	p, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("vsock: bad port in %q", line)
	}
	return uint32(p), nil
}

func (v *Vsock) allocPortLocked() uint32 {
	for {
		p := v.nextPort
		v.nextPort++
		if v.nextPort == 0 {
			v.nextPort = vsockHostPortBase
		}
		used := false
		for k := range v.conns {
			if k.local == p {
				used = true
				break
			}
		}
		if !used {
			return p
		}
	}
}

func (v *Vsock) newConnLocked(key vsockKey, s net.Conn, st vsockState) *vsockConn {
	c := &vsockConn{key: key, sock: s, state: st, credit: make(chan struct{}, 1), wready: make(chan struct{}, 1)}
	v.conns[key] = c
	v.connWG.Add(1)
	go func() {
		defer v.connWG.Done()
		v.writer(c)
	}()
	return c
}

// startReaderLocked starts copying host data to the guest once the
// connection is established.
func (v *Vsock) startReaderLocked(c *vsockConn) {
	if c.readerStarted {
		return
	}
	c.readerStarted = true
	v.connWG.Add(1)
	go func() {
		defer v.connWG.Done()
		v.reader(c)
	}()
}

// queueLocked queues a packet for the guest on connection c.
func (v *Vsock) queueLocked(c *vsockConn, op uint16, flags uint32, payload []byte) {
	v.rxq = append(v.rxq, vsockPacket{
		hdr: VsockHeader{
			SrcCID: VsockHostCID, DstCID: v.cid, SrcPort: c.key.local, DstPort: c.key.peer,
			Type: VsockTypeStream, Op: op, Flags: flags,
		},
		payload: payload,
	})
	signal(v.rxWake)
}

// queueRSTLocked answers a packet that has no connection.
func (v *Vsock) queueRSTLocked(h VsockHeader) {
	if h.Op == VsockOpRST {
		return
	}
	v.rxq = append(v.rxq, vsockPacket{hdr: VsockHeader{
		SrcCID: VsockHostCID, DstCID: v.cid, SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: VsockTypeStream, Op: VsockOpRST,
	}})
	signal(v.rxWake)
}

// closeConnLocked forgets c and closes its socket; its goroutines exit.
func (v *Vsock) closeConnLocked(c *vsockConn) {
	if c.closed {
		return
	}
	c.closed = true
	delete(v.conns, c.key)
	c.sock.Close()
	signal(c.credit)
	signal(c.wready)
}

// reader copies host socket data to the guest within the guest's credit.
func (v *Vsock) reader(c *vsockConn) {
	buf := make([]byte, vsockMaxPayload)
	for {
		v.mu.Lock()
		free := c.peerFree()
		closed := c.closed
		v.mu.Unlock()
		if closed {
			return
		}
		if free == 0 {
			<-c.credit
			continue
		}
		n, err := c.sock.Read(buf[:min(int(free), len(buf))])
		v.mu.Lock()
		if c.closed {
			v.mu.Unlock()
			return
		}
		if n > 0 {
			c.txCnt += uint32(n)
			v.queueLocked(c, VsockOpRW, 0, append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			// The host side is done sending: tell the guest and wait for
			// its RST.
			c.state = vsockClosing
			v.queueLocked(c, VsockOpShutdown, VsockShutdownRecv|VsockShutdownSend, nil)
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
	}
}

// writer copies guest data to the host socket and returns credit.
func (v *Vsock) writer(c *vsockConn) {
	for {
		v.mu.Lock()
		hello, data := c.hello, c.wbuf
		c.hello, c.wbuf = nil, nil
		closed, sendDone := c.closed, c.sendDone
		v.mu.Unlock()
		if closed {
			return
		}
		if len(hello) > 0 {
			if _, err := c.sock.Write(hello); err != nil {
				v.mu.Lock()
				v.resetConnLocked(c)
				v.mu.Unlock()
				return
			}
		}
		if len(data) == 0 {
			if sendDone {
				if uc, ok := c.sock.(*net.UnixConn); ok {
					uc.CloseWrite()
				}
				<-c.wready
				v.mu.Lock()
				closed = c.closed
				v.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			<-c.wready
			continue
		}
		_, err := c.sock.Write(data)
		v.mu.Lock()
		if c.closed {
			v.mu.Unlock()
			return
		}
		if err != nil {
			v.resetConnLocked(c)
			v.mu.Unlock()
			return
		}
		c.fwdCnt += uint32(len(data))
		if c.fwdCnt-c.fwdSent >= vsockBufAlloc/4 {
			v.queueLocked(c, VsockOpCreditUpdate, 0, nil)
		}
		v.mu.Unlock()
	}
}

// transmit handles every packet the guest sent.
func (v *Vsock) transmit(q *Queue) error {
	for {
		ch, err := q.Pop()
		if err != nil {
			return err
		}
		if ch == nil {
			return nil
		}
		v.HandlePacket(ch)
		if err := q.Push(ch.Head, 0); err != nil {
			return err
		}
		if err := q.Signal(); err != nil {
			return err
		}
	}
}

// HandlePacket processes one guest-to-host packet chain (header, then
// payload, in readable buffers). Malformed packets are dropped or answered
// with RST; they never stop the device.
func (v *Vsock) HandlePacket(ch *Chain) {
	var raw [VsockHeaderSize]byte
	if ch.ReadAt(raw[:], 0) != VsockHeaderSize {
		return
	}
	h, _ := ParseVsockHeader(raw[:])
	if h.Len > vsockMaxPayload || int(h.Len) > ch.ReadableLen()-VsockHeaderSize {
		return // a lying length: drop the packet
	}
	if h.SrcCID != v.cid {
		return // spoofed source
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if h.DstCID != VsockHostCID || h.Type != VsockTypeStream {
		v.queueRSTLocked(h)
		return
	}
	key := vsockKey{local: h.DstPort, peer: h.SrcPort}
	c := v.conns[key]
	if c == nil {
		if h.Op == VsockOpRequest {
			v.guestConnectLocked(h)
			return
		}
		v.queueRSTLocked(h)
		return
	}
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	signal(c.credit)
	switch h.Op {
	case VsockOpResponse:
		if c.state != vsockConnecting {
			v.resetConnLocked(c)
			return
		}
		c.state = vsockEstablished
		// The OK line goes through the writer so it precedes guest data.
		c.hello = fmt.Appendf(nil, "OK %d\n", c.key.local)
		signal(c.wready)
		v.startReaderLocked(c)
	case VsockOpRW:
		if c.state == vsockConnecting || c.sendDone {
			v.resetConnLocked(c)
			return
		}
		if len(c.wbuf)+int(h.Len) > vsockBufAlloc {
			v.resetConnLocked(c) // the guest ignored our credit
			return
		}
		start := len(c.wbuf)
		c.wbuf = append(c.wbuf, make([]byte, h.Len)...)
		ch.ReadAt(c.wbuf[start:], VsockHeaderSize)
		signal(c.wready)
	case VsockOpCreditRequest:
		v.queueLocked(c, VsockOpCreditUpdate, 0, nil)
	case VsockOpCreditUpdate:
	case VsockOpShutdown:
		if h.Flags&(VsockShutdownRecv|VsockShutdownSend) == VsockShutdownRecv|VsockShutdownSend || c.state == vsockClosing {
			v.resetConnLocked(c)
			return
		}
		if h.Flags&VsockShutdownSend != 0 {
			c.sendDone = true
			signal(c.wready)
		}
	case VsockOpRST:
		v.closeConnLocked(c)
	case VsockOpRequest:
		v.resetConnLocked(c)
	default:
		v.resetConnLocked(c)
	}
}

// resetConnLocked sends RST for c and closes it.
func (v *Vsock) resetConnLocked(c *vsockConn) {
	v.queueLocked(c, VsockOpRST, 0, nil)
	v.closeConnLocked(c)
}

// guestConnectLocked forwards a guest connection to host port P to the
// Unix socket UDSPath_P.
func (v *Vsock) guestConnectLocked(h VsockHeader) {
	if len(v.conns) >= vsockMaxConnections {
		v.queueRSTLocked(h)
		return
	}
	s, err := net.Dial("unix", fmt.Sprintf("%s_%d", v.udsPath, h.DstPort))
	if err != nil {
		v.queueRSTLocked(h)
		return
	}
	c := v.newConnLocked(vsockKey{local: h.DstPort, peer: h.SrcPort}, s, vsockEstablished)
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	v.queueLocked(c, VsockOpResponse, 0, nil)
	v.startReaderLocked(c)
}

// serveRX delivers queued packets into guest receive buffers.
func (v *Vsock) serveRX(stop <-chan struct{}, q *Queue) {
	for {
		for {
			v.mu.Lock()
			empty := len(v.rxq) == 0
			v.mu.Unlock()
			if empty {
				break
			}
			ch, err := q.Pop()
			if err != nil {
				return
			}
			if ch == nil {
				break
			}
			n := v.deliver(ch)
			if q.Push(ch.Head, n) != nil || q.Signal() != nil {
				return
			}
		}
		select {
		case <-stop:
			return
		case <-q.Kick():
		case <-v.rxWake:
		}
	}
}

// deliver writes the next queued packet into ch, splitting data that does
// not fit, and returns the bytes written.
func (v *Vsock) deliver(ch *Chain) uint32 {
	room := ch.WritableLen() - VsockHeaderSize
	if room < 0 {
		return 0 // too small for a header: hand the buffer back empty
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.rxq) == 0 {
		return 0
	}
	p := &v.rxq[0]
	payload := p.payload
	if len(payload) > room {
		payload = payload[:room]
	}
	h := p.hdr
	h.Len = uint32(len(payload))
	h.BufAlloc = vsockBufAlloc
	if c := v.conns[vsockKey{local: h.SrcPort, peer: h.DstPort}]; c != nil {
		h.FwdCnt = c.fwdCnt
		c.fwdSent = c.fwdCnt
	}
	ch.WriteAt(h.Marshal(), 0)
	ch.WriteAt(payload, VsockHeaderSize)
	if len(payload) < len(p.payload) {
		p.payload = p.payload[len(payload):]
	} else {
		v.rxq[0] = vsockPacket{}
		v.rxq = v.rxq[1:]
	}
	return uint32(VsockHeaderSize + len(payload))
}
