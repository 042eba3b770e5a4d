package driver

// MemoryStat is one line of dommemstat: a statistic with virsh's tag
// ("actual", "swap_in", "unused", "rss"...) and its value (KiB for sizes,
// seconds since the epoch for last_update, counts for faults).
type MemoryStat struct {
	Tag   string `json:"tag"`
	Value uint64 `json:"value"`
}

// InterfaceStats are a domain interface's counters as domifstat prints
// them, from the guest's point of view (rx: host to guest). A negative
// value is a counter the driver does not have; virsh leaves it out.
type InterfaceStats struct {
	RxBytes   int64 `json:"rx_bytes"`
	RxPackets int64 `json:"rx_packets"`
	RxErrs    int64 `json:"rx_errs"`
	RxDrop    int64 `json:"rx_drop"`
	TxBytes   int64 `json:"tx_bytes"`
	TxPackets int64 `json:"tx_packets"`
	TxErrs    int64 `json:"tx_errs"`
	TxDrop    int64 `json:"tx_drop"`
}

// IPAddress is one address of a domain interface (domifaddr).
type IPAddress struct {
	Type   string `json:"type"` // "ipv4" or "ipv6"
	Addr   string `json:"address"`
	Prefix int    `json:"prefix"`
}

// InterfaceAddresses is one interface of domifaddr with its addresses.
type InterfaceAddresses struct {
	Name  string      `json:"name"` // the target device (vnet0)
	MAC   string      `json:"mac"`
	Addrs []IPAddress `json:"addresses"`
}

// Address sources of domifaddr --source.
const (
	AddrSourceLease = "lease" // the DHCP leases of the interface's network
	AddrSourceAgent = "agent" // the guest agent
	AddrSourceARP   = "arp"   // the host's ARP table
)

// InterfaceSpec is the interface attach-interface adds.
type InterfaceSpec struct {
	Type   string // network, bridge, ethernet, ...
	Source string // network or bridge name
	Target string // tap device name; "" lets the engine pick one
	MAC    string // "" generates one in 52:54:00
	Model  string // "virtio"; "" for the driver's default
}

// DeviceScope says where a device change applies: Scope is --live,
// --config or --current; Flags tells that any of them (or --persistent)
// was given, which makes virsh call the *Flags variant of the libvirt API
// (errors name it, and without flags libvirt means the live domain).
type DeviceScope struct {
	ModifyScope
	Flags bool
}

// DomainDevices reaches the devices of a domain: memory balloon
// statistics, network interface counters, addresses and link state, and
// interface attach/detach. It is optional: the shell checks for it with a
// type assertion.
type DomainDevices interface {
	// DomainMemoryStats returns a running domain's memory statistics in
	// the order dommemstat prints them.
	DomainMemoryStats(name string) ([]MemoryStat, error)
	// SetMemoryStatsPeriod sets how often the balloon collects the
	// guest's statistics, in seconds (dommemstat --period; 0 stops it).
	SetMemoryStatsPeriod(name string, seconds int, scope ModifyScope) error
	// InterfaceStats returns the counters of a running domain's interface
	// named by its target device or MAC address.
	InterfaceStats(name, iface string) (InterfaceStats, error)
	// InterfaceAddresses returns the addresses of a running domain's
	// interfaces from source (AddrSourceLease, AddrSourceAgent,
	// AddrSourceARP); interfaces without an address are left out.
	InterfaceAddresses(name, source string) ([]InterfaceAddresses, error)
	// SetInterfaceLink sets the link state of the interface named by its
	// target device or MAC address (domif-setlink): live on a running
	// domain, in the persistent definition with config.
	SetInterfaceLink(name, iface string, up bool, config bool) error
	// AttachInterface adds an interface (attach-interface).
	AttachInterface(name string, spec InterfaceSpec, scope DeviceScope) error
	// DetachInterface removes the interface of type typ, picked by mac
	// when the domain has several (detach-interface).
	DetachInterface(name, typ, mac string, scope DeviceScope) error
}
