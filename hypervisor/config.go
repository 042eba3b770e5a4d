// Package hypervisor holds vsh's embedded KVM engine. This file defines
// Config, the engine's view of a virtual machine: everything needed to build
// and run one, with no XML in it. The domxml package converts a libvirt
// domain definition into a Config; the engine's builder turns a Config into
// a running VM.
package hypervisor

// LifecycleAction says what happens when the guest powers off, reboots or
// crashes, mirroring libvirt's <on_poweroff>, <on_reboot> and <on_crash>.
type LifecycleAction string

// Lifecycle actions, with libvirt's names.
const (
	ActionDestroy         LifecycleAction = "destroy"
	ActionRestart         LifecycleAction = "restart"
	ActionPreserve        LifecycleAction = "preserve"
	ActionRenameRestart   LifecycleAction = "rename-restart"
	ActionCoredumpDestroy LifecycleAction = "coredump-destroy"
	ActionCoredumpRestart LifecycleAction = "coredump-restart"
)

// Config describes one virtual machine for the engine.
type Config struct {
	Name string
	UUID string // canonical 8-4-4-4-12 form

	// MemoryBytes is the guest RAM size (libvirt's <memory>, or
	// <currentMemory> target handled by the balloon).
	MemoryBytes uint64
	// CurrentMemoryBytes is the balloon target at boot; 0 means MemoryBytes.
	CurrentMemoryBytes uint64

	// VCPUs is the number of vCPUs started at boot.
	VCPUs    int
	Topology Topology
	// CPUSet is the default host CPU affinity of every vCPU thread
	// (<vcpu cpuset=...>); empty means no pinning.
	CPUSet []int
	// VCPUPins overrides CPUSet per vCPU (<cputune><vcpupin>).
	VCPUPins map[int][]int

	Boot Boot

	OnPoweroff LifecycleAction
	OnReboot   LifecycleAction
	OnCrash    LifecycleAction

	// HugePages asks for hugetlbfs-backed guest memory; NoSharePages
	// excludes guest memory from KSM (MADV_UNMERGEABLE).
	HugePages    bool
	NoSharePages bool

	Serials  []Serial
	Consoles []Console
	Disks    []Disk
	NICs     []NIC
	RNGs     []RNG
	Balloon  *Balloon
	Vsock    *Vsock
}

// Topology is the guest CPU topology (<cpu><topology>). Zero values mean
// "one socket holding all vCPUs".
type Topology struct {
	Sockets, Dies, Cores, Threads int
}

// Boot is a direct kernel boot (<os><kernel/><initrd/><cmdline/>).
type Boot struct {
	Kernel  string // path to a bzImage or an ELF vmlinux
	Initrd  string // optional
	Cmdline string
}

// Serial is a 16550 UART. Index 0 is COM1 (port 0x3f8, IRQ 4).
type Serial struct {
	Index int
	// LogFile, when set, receives a copy of everything the guest writes.
	LogFile string
}

// Console is a virtio-console port (<console type='pty'><target type='virtio'/>).
type Console struct {
	Index int
}

// DiskFormat is a disk image format.
type DiskFormat string

// Disk image formats the engine reads.
const (
	FormatRaw   DiskFormat = "raw"
	FormatQcow2 DiskFormat = "qcow2"
)

// CacheMode is libvirt's <driver cache=...>.
type CacheMode string

// Cache modes.
const (
	CacheDefault      CacheMode = ""
	CacheNone         CacheMode = "none"
	CacheWritethrough CacheMode = "writethrough"
	CacheWriteback    CacheMode = "writeback"
	CacheDirectSync   CacheMode = "directsync"
	CacheUnsafe       CacheMode = "unsafe"
)

// Disk is a virtio-blk device backed by a file or block device.
type Disk struct {
	Path     string
	Format   DiskFormat
	ReadOnly bool
	Cache    CacheMode
	Serial   string // returned by VIRTIO_BLK_T_GET_ID
	Target   string // the guest-visible name from <target dev=...>, e.g. "vda"
	Discard  bool   // <driver discard='unmap'>
}

// NICBackend says how a virtio-net device reaches the host.
type NICBackend string

// NIC backends.
const (
	NICTap NICBackend = "tap" // a tap device, optionally attached to a bridge
)

// NIC is a virtio-net device.
type NIC struct {
	MAC     string // 52:54:00:xx:xx:xx
	Backend NICBackend
	// TapName is the tap device to open or create ("" picks vnetN).
	TapName string
	// Bridge, when set, is the host bridge the tap is attached to.
	Bridge string
	// Network is the libvirt network name the NIC belongs to, if any.
	Network string
	LinkUp  bool
}

// RNG is a virtio-rng device fed from the host's getrandom.
type RNG struct {
	// RateBytes/RatePeriodMs implement <rate bytes= period=>; zero means unlimited.
	RateBytes    int
	RatePeriodMs int
}

// Balloon is a virtio-balloon device.
type Balloon struct {
	// StatsPeriodSeconds is <stats period=...>; zero disables stats polling.
	StatsPeriodSeconds int
	FreePageReporting  bool
	DeflateOnOOM       bool
}

// Vsock is a virtio-vsock device.
type Vsock struct {
	CID uint32
	// UDSPath is the host Unix socket through which host processes reach
	// the guest, as Firecracker does ("" lets the engine choose one in the
	// run directory).
	UDSPath string
}
