package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VnetHdrSize is the virtio_net_hdr size a tap opened with vnetHdr uses:
// the virtio 1.x header including num_buffers, as virtio.NetHdrSize.
const VnetHdrSize = 12

// Tap is an open tap interface (IFF_TAP|IFF_NO_PI): each Read returns one
// Ethernet frame and each Write sends one, preceded by a virtio_net_hdr
// when it was opened with vnetHdr. It implements virtio.NetBackend and
// virtio.NetOffloader. Reads go through the Go poller, so SetReadDeadline
// interrupts them.
type Tap struct {
	file    *os.File
	name    string
	vnetHdr bool
}

// OpenTap opens (creating it if needed) the tap interface name; "" lets
// the kernel pick vnetN. A tap this call creates lives until Close; a
// persistent one made beforehand (ip tuntap add) stays. vnetHdr turns on
// IFF_VNET_HDR with a 12-byte header, which virtio-net's offloads need.
func OpenTap(name string, vnetHdr bool) (*Tap, error) {
	if name == "" {
		name = "vnet%d"
	}
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open tap %s: /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("open tap %s: needs root (CAP_NET_ADMIN): %w", name, err)
		}
		return nil, fmt.Errorf("open tap %s: TUNSETIFF: %w", name, err)
	}
	if vnetHdr {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrSize); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("open tap %s: TUNSETVNETHDRSZ: %w", ifr.Name(), err)
		}
	}
	// The fd is non-blocking, so os.NewFile registers it with the poller.
	t := &Tap{file: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name(), vnetHdr: vnetHdr}
	return t, nil
}

// Name is the interface name (vnet0...).
func (t *Tap) Name() string { return t.name }

// VnetHdr reports whether frames carry a virtio_net_hdr.
func (t *Tap) VnetHdr() bool { return t.vnetHdr }

// Read reads one frame.
func (t *Tap) Read(p []byte) (int, error) { return t.file.Read(p) }

// Write sends one frame.
func (t *Tap) Write(p []byte) (int, error) { return t.file.Write(p) }

// SetReadDeadline bounds blocked and future Reads.
func (t *Tap) SetReadDeadline(d time.Time) error { return t.file.SetReadDeadline(d) }

// SetOffload tells the kernel which offloads the reader accepts
// (TUNSETOFFLOAD with unix.TUN_F_* flags): frames it reads may then be
// partially checksummed or GSO-sized.
func (t *Tap) SetOffload(flags int) error {
	rc, err := t.file.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags)
	}); err != nil {
		return err
	}
	if ierr != nil {
		return fmt.Errorf("tap %s: TUNSETOFFLOAD %#x: %w", t.name, flags, ierr)
	}
	return nil
}

// HostMAC returns the MAC libvirt gives the host side of a guest's tap:
// the guest's with the first byte 0xfe, so a bridge (which takes the
// lowest port MAC unless it has its own) never takes the guest's address.
func HostMAC(guest net.HardwareAddr) net.HardwareAddr {
	m := append(net.HardwareAddr(nil), guest...)
	if len(m) > 0 {
		m[0] = 0xfe
	}
	return m
}

// SetMAC sets the tap's (host-side) MAC address.
func (t *Tap) SetMAC(mac net.HardwareAddr) error {
	l, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("tap %s: set MAC %s: %w", t.name, mac, err)
	}
	return nil
}

// AttachBridge makes the tap a port of an existing bridge.
func (t *Tap) AttachBridge(bridge string) error {
	l, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("tap %s: bridge %s: %w", t.name, bridge, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("tap %s: %s is a %s device, not a bridge", t.name, bridge, br.Type())
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("tap %s: attach to bridge %s: %w", t.name, bridge, err)
	}
	return nil
}

// SetUp brings the tap's link up.
func (t *Tap) SetUp() error {
	l, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("tap %s: set up: %w", t.name, err)
	}
	return nil
}

// Close closes the tap; a tap OpenTap created disappears with it.
func (t *Tap) Close() error { return t.file.Close() }

// OpenNIC opens a guest NIC's tap the way libvirt sets one up: tap name
// (""=vnetN), host-side MAC derived from the guest's, attached to bridge
// when it is not "" (the network's bridge for <interface type='network'>,
// the host bridge for type='bridge', none for type='ethernet'), and up.
// On error nothing is left behind.
func OpenNIC(tapName string, guestMAC net.HardwareAddr, bridge string) (*Tap, error) {
	t, err := OpenTap(tapName, true)
	if err != nil {
		return nil, err
	}
	err = nil
	if len(guestMAC) == 6 {
		err = t.SetMAC(HostMAC(guestMAC))
	}
	if err == nil && bridge != "" {
		err = t.AttachBridge(bridge)
	}
	if err == nil {
		err = t.SetUp()
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}
