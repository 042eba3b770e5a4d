package virtio

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const testCID = 42

// vsockGuest drives a vsock device as the guest's driver would.
type vsockGuest struct {
	*testDriver
	rxBufs map[uint16]uint64 // head -> buffer address
}

func startVsock(t *testing.T) (*vsockGuest, *Vsock) {
	t.Helper()
	uds := filepath.Join(t.TempDir(), "v.sock")
	v, err := NewVsock(testCID, uds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	d := newTestDriver(t, v)
	d.start(FeatureRingEventIdx, 64)
	g := &vsockGuest{testDriver: d, rxBufs: map[uint16]uint64{}}
	for i := 0; i < 8; i++ {
		g.postRX()
	}
	d.notify(0)
	return g, v
}

func (g *vsockGuest) postRX() {
	head, addrs := g.add(0, in(VsockHeaderSize+256))
	g.rxBufs[head] = addrs[0]
}

// recv returns the next packet the device sent, reposting the buffer.
func (g *vsockGuest) recv() (VsockHeader, []byte) {
	g.t.Helper()
	id, n := g.waitUsed(0)
	addr := g.rxBufs[id]
	b := append([]byte(nil), g.bytes(addr, uint64(n))...)
	g.postRX()
	g.notify(0)
	h, err := ParseVsockHeader(b)
	if err != nil {
		g.t.Fatal(err)
	}
	if int(h.Len) != len(b)-VsockHeaderSize {
		g.t.Fatalf("header len %d, used length %d", h.Len, n)
	}
	if h.SrcCID != VsockHostCID || h.DstCID != testCID || h.Type != VsockTypeStream {
		g.t.Fatalf("bad addressing in %+v", h)
	}
	return h, b[VsockHeaderSize:]
}

func (g *vsockGuest) send(op uint16, srcPort, dstPort, flags uint32, payload []byte, bufAlloc, fwdCnt uint32) {
	g.t.Helper()
	h := VsockHeader{SrcCID: testCID, DstCID: VsockHostCID, SrcPort: srcPort, DstPort: dstPort,
		Len: uint32(len(payload)), Type: VsockTypeStream, Op: op, Flags: flags, BufAlloc: bufAlloc, FwdCnt: fwdCnt}
	g.add(1, out(append(h.Marshal(), payload...)))
	g.notify(1)
	g.waitUsed(1)
}

func TestVsockHostInitiated(t *testing.T) {
	g, v := startVsock(t)
	host, err := net.Dial("unix", v.UDSPath())
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	fmt.Fprintf(host, "CONNECT 1234\n")

	h, _ := g.recv()
	if h.Op != VsockOpRequest || h.DstPort != 1234 {
		t.Fatalf("got %+v, want REQUEST to port 1234", h)
	}
	hostPort := h.SrcPort
	g.send(VsockOpResponse, 1234, hostPort, 0, nil, 1<<16, 0)
	r := bufio.NewReader(host)
	line, err := r.ReadString('\n')
	if err != nil || line != fmt.Sprintf("OK %d\n", hostPort) {
		t.Fatalf("host got %q, %v", line, err)
	}

	host.Write([]byte("ping"))
	h, data := g.recv()
	if h.Op != VsockOpRW || string(data) != "ping" || h.DstPort != 1234 || h.SrcPort != hostPort {
		t.Fatalf("guest got %+v %q", h, data)
	}
	g.send(VsockOpRW, 1234, hostPort, 0, []byte("pong"), 1<<16, 4)
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("host got %q, %v", buf, err)
	}

	// Credit request: the answer carries the host's forwarded count, which
	// reaches 4 once the writer has accounted for "pong".
	for {
		g.send(VsockOpCreditRequest, 1234, hostPort, 0, nil, 1<<16, 4)
		h, _ = g.recv()
		if h.Op != VsockOpCreditUpdate || h.FwdCnt > 4 || h.BufAlloc != vsockBufAlloc {
			t.Fatalf("credit update %+v", h)
		}
		if h.FwdCnt == 4 {
			break
		}
	}

	// The guest closes: the host answers RST and the host socket sees EOF.
	g.send(VsockOpShutdown, 1234, hostPort, VsockShutdownRecv|VsockShutdownSend, nil, 1<<16, 4)
	h, _ = g.recv()
	if h.Op != VsockOpRST {
		t.Fatalf("got %+v, want RST", h)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("host read after close: %v, want EOF", err)
	}
}

func TestVsockGuestInitiated(t *testing.T) {
	g, v := startVsock(t)
	l, err := net.Listen("unix", v.UDSPath()+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	g.send(VsockOpRequest, 777, 5000, 0, nil, 1<<16, 0)
	h, _ := g.recv()
	if h.Op != VsockOpResponse || h.SrcPort != 5000 || h.DstPort != 777 {
		t.Fatalf("got %+v, want RESPONSE 5000->777", h)
	}
	host, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	g.send(VsockOpRW, 777, 5000, 0, []byte("hello host"), 1<<16, 0)
	buf := make([]byte, 10)
	if _, err := io.ReadFull(host, buf); err != nil || string(buf) != "hello host" {
		t.Fatalf("host got %q, %v", buf, err)
	}
	host.Write([]byte("hello guest"))
	if h, data := g.recv(); h.Op != VsockOpRW || string(data) != "hello guest" {
		t.Fatalf("guest got %+v %q", h, data)
	}
	// The host closes: the guest sees SHUTDOWN and answers RST.
	host.Close()
	h, _ = g.recv()
	if h.Op != VsockOpShutdown || h.Flags != VsockShutdownRecv|VsockShutdownSend {
		t.Fatalf("got %+v, want SHUTDOWN", h)
	}
	g.send(VsockOpRST, 777, 5000, 0, nil, 1<<16, 11)

	// A port nobody listens on is refused.
	g.send(VsockOpRequest, 778, 5001, 0, nil, 1<<16, 0)
	if h, _ := g.recv(); h.Op != VsockOpRST || h.DstPort != 778 {
		t.Fatalf("got %+v, want RST", h)
	}
	// Data for an unknown connection is refused too.
	g.send(VsockOpRW, 779, 5000, 0, []byte("x"), 1<<16, 0)
	if h, _ := g.recv(); h.Op != VsockOpRST {
		t.Fatalf("got %+v, want RST", h)
	}
}

func TestVsockCredit(t *testing.T) {
	g, v := startVsock(t)
	l, err := net.Listen("unix", v.UDSPath()+"_6000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The guest can buffer only 100 bytes.
	g.send(VsockOpRequest, 900, 6000, 0, nil, 100, 0)
	if h, _ := g.recv(); h.Op != VsockOpResponse {
		t.Fatalf("got %+v", h)
	}
	host, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	host.Write(bytes.Repeat([]byte("a"), 250))
	got := 0
	for got < 100 {
		h, data := g.recv()
		if h.Op != VsockOpRW {
			t.Fatalf("got %+v", h)
		}
		got += len(data)
	}
	if got != 100 {
		t.Fatalf("guest received %d bytes with 100 bytes of credit", got)
	}
	// Consuming the data and announcing it frees credit for the rest.
	g.send(VsockOpCreditUpdate, 900, 6000, 0, nil, 100, 100)
	for got < 200 {
		_, data := g.recv()
		got += len(data)
	}
	g.send(VsockOpCreditUpdate, 900, 6000, 0, nil, 1000, 200)
	for got < 250 {
		_, data := g.recv()
		got += len(data)
	}
	if got != 250 {
		t.Fatalf("received %d bytes, want 250", got)
	}
}

func TestVsockBadConnectLine(t *testing.T) {
	g, v := startVsock(t)
	_ = g
	host, err := net.Dial("unix", v.UDSPath())
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	fmt.Fprintf(host, "HELLO there\n")
	if _, err := host.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("bad CONNECT line: read %v, want EOF", err)
	}
}

func TestVsockConfig(t *testing.T) {
	g, _ := startVsock(t)
	if got := uint64(g.read32(RegConfig)) | uint64(g.read32(RegConfig+4))<<32; got != testCID {
		t.Fatalf("guest_cid %d, want %d", got, testCID)
	}
	if _, err := NewVsock(2, filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("CID 2 accepted: %v", err)
	}
}

func TestVsockHostConnectBeforeDriver(t *testing.T) {
	uds := filepath.Join(t.TempDir(), "v.sock")
	v, err := NewVsock(testCID, uds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	host, err := net.Dial("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	fmt.Fprintf(host, "CONNECT 99\n")
	// Wait until the device holds the connection.
	for {
		v.mu.Lock()
		n := len(v.early)
		v.mu.Unlock()
		if n == 1 {
			break
		}
		runtime.Gosched()
	}
	d := newTestDriver(t, v)
	d.start(FeatureRingEventIdx, 16)
	g := &vsockGuest{testDriver: d, rxBufs: map[uint16]uint64{}}
	g.postRX()
	d.notify(0)
	if h, _ := g.recv(); h.Op != VsockOpRequest || h.DstPort != 99 {
		t.Fatalf("got %+v, want REQUEST to port 99", h)
	}
}

func TestVsockHalfClose(t *testing.T) {
	g, v := startVsock(t)
	l, err := net.Listen("unix", v.UDSPath()+"_7000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g.send(VsockOpRequest, 1000, 7000, 0, nil, 1<<16, 0)
	if h, _ := g.recv(); h.Op != VsockOpResponse {
		t.Fatalf("got %+v", h)
	}
	host, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	g.send(VsockOpRW, 1000, 7000, 0, []byte("request"), 1<<16, 0)
	g.send(VsockOpShutdown, 1000, 7000, VsockShutdownSend, nil, 1<<16, 0)
	got, err := io.ReadAll(host)
	if err != nil || string(got) != "request" {
		t.Fatalf("host read %q, %v; want the data then EOF", got, err)
	}
	host.Write([]byte("reply"))
	if h, data := g.recv(); h.Op != VsockOpRW || string(data) != "reply" {
		t.Fatalf("guest got %+v %q after half close", h, data)
	}
}
