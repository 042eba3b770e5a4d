package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vsh/guest/virtiopayload"
	"vsh/hypervisor"
	"vsh/hypervisor/network/netns"
)

// TestKVMVirtioPayloadNet boots the virtio payload with one NIC on a tap in
// a private network namespace and talks to it through a packet socket on
// that tap: the guest's hello broadcast must arrive, and three data frames
// (the smallest Ethernet payload, a middle size and a full 1514-byte frame)
// must come back echoed with the FNV-1a the guest computed over what it
// received. The guest then reports its MAC and link state from the
// device's config space and powers off. Nothing touches the host's own
// network: the tap, and the VMM that creates it, live in the namespace.
func TestKVMVirtioPayloadNet(t *testing.T) {
	requireKVM(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: a tap in a private network namespace")
	}
	kernel := virtioPayload(t)
	ns := privateNetns(t)

	guestMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	hostMAC := net.HardwareAddr{0x02, 0x00, 0x00, 0x76, 0x73, 0x68}
	const tap = "vp0"
	cfg := virtioPayloadConfig("virtio-net", kernel, virtiopayload.Cmdline(virtiopayload.ModeNet, 0, 0))
	cfg.NICs = []hypervisor.NIC{{MAC: guestMAC.String(), Backend: hypervisor.NICTap, TapName: tap, LinkUp: true}}
	p := Paths{RunDir: t.TempDir(), Name: cfg.Name}
	var pid int
	if err := ns.Do(func() (err error) {
		// The VMM inherits the namespace of the thread that forks it.
		pid, err = Launch("", p, 7, cfg)
		return err
	}); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	var sock *packetSocket
	waitFor(t, "the VMM's tap "+tap, func() bool {
		err := ns.Do(func() (err error) {
			sock, err = openPacketSocket(tap, virtiopayload.EtherType)
			return err
		})
		return err == nil
	})
	defer sock.Close()

	deadline := time.Now().Add(kvmWait)
	frame, err := sock.receive(deadline, func(f []byte) bool {
		src, _, ok := virtiopayload.ParseHello(f)
		return ok && bytes.Equal(src, guestMAC)
	})
	if err != nil {
		t.Fatalf("no hello from the guest: %v", err)
	}
	_, seq, _ := virtiopayload.ParseHello(frame)
	t.Logf("hello #%d from %s", seq, guestMAC)

	const maxEcho = 1514 - 14 - len("VP-ECHO 01234567 ")
	rxBytes := 0
	for _, size := range []int{45, 700, 1499} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		out := virtiopayload.DataFrame(guestMAC, hostMAC, data)
		if err := sock.send(out); err != nil {
			t.Fatalf("send %d-byte frame: %v", len(out), err)
		}
		rxBytes += len(out)
		frame, err := sock.receive(deadline, func(f []byte) bool {
			_, ok := virtiopayload.ParseEcho(f)
			return ok
		})
		if err != nil {
			t.Fatalf("no echo of the %d-byte frame: %v", len(out), err)
		}
		e, _ := virtiopayload.ParseEcho(frame)
		want := out[14:]
		if len(want) > maxEcho {
			want = want[:maxEcho]
		}
		if !bytes.Equal(e.Src, guestMAC) || !bytes.Equal(e.Dst, hostMAC) {
			t.Errorf("echo of the %d-byte frame went %s -> %s, want %s -> %s", len(out), e.Src, e.Dst, guestMAC, hostMAC)
		}
		if sum := virtiopayload.FNV1a(out); e.FNV != sum {
			t.Errorf("the guest received the %d-byte frame with FNV-1a %08x, want %08x", len(out), e.FNV, sum)
		}
		if !bytes.Equal(e.Data, want) {
			t.Errorf("the guest echoed %d bytes of the %d-byte frame, not the %d sent", len(e.Data), len(out), len(want))
		}
	}
	if err := sock.send(virtiopayload.QuitFrame(guestMAC, hostMAC)); err != nil {
		t.Fatalf("send quit frame: %v", err)
	}

	console := awaitPayloadEnd(t, p, pid)
	line := requireLine(t, console, "VP-OK net0 ")
	t.Log(line)
	want := fmt.Sprintf("VP-OK net0 mac=%s link=up hellos=", guestMAC)
	if !strings.HasPrefix(line, want) || !strings.Contains(line, fmt.Sprintf(" echoed=3 rx-bytes=%d ", rxBytes)) {
		t.Errorf("payload reported %q, want %q... echoed=3 rx-bytes=%d", line, want, rxBytes)
	}
}

// privateNetns gives the test a thread in a network namespace of its own,
// skipping the test where none can be made.
func privateNetns(t testing.TB) *netns.Thread {
	t.Helper()
	ns, err := netns.New()
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(ns.Close)
	return ns
}

// packetSocket sends and receives raw Ethernet frames of one ethertype on
// one interface.
type packetSocket struct {
	fd      int
	ifindex int
	proto   uint16
}

// openPacketSocket opens a packet socket on the interface named ifname
// (in the calling thread's namespace) for frames of ethertype proto.
func openPacketSocket(ifname string, proto uint16) (*packetSocket, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	be := proto>>8 | proto<<8
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(be))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: be, Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", ifname, err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &packetSocket{fd: fd, ifindex: ifi.Index, proto: be}, nil
}

func (s *packetSocket) send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Protocol: s.proto, Ifindex: s.ifindex, Halen: 6, Addr: [8]byte{frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]}})
}

// receive returns the first frame the guest sent (not one this host sent)
// that match accepts, or an error at deadline.
func (s *packetSocket) receive(deadline time.Time, match func([]byte) bool) ([]byte, error) {
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
	return nil, errors.New("timed out")
}

func (s *packetSocket) Close() error { return unix.Close(s.fd) }
