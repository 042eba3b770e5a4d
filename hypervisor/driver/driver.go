// Package driver is vsh's connection API: the one interface every shell
// command goes through, whatever runs the objects behind it. It plays the
// role of libvirt's public API (virConnect*, virDomain*, virNetwork*,
// virStoragePool*, virStorageVol*). Each URI scheme has a driver:
// vsh:///session and vsh:///system (persistent state plus the embedded KVM
// engine) and test:///default (in memory, like libvirt's test driver).
//
// Errors returned by a driver are *Error values whose Error() text is
// libvirt's second error line ("Domain not found: no domain with matching
// name 'x'"); the shell adds virsh's first line ("failed to get domain 'x'").
package driver

import (
	"fmt"
	"io"
	"time"
)

// Conn is an open connection to a driver.
type Conn interface {
	Host
	Domains
	Networks
	Storage
	// Close releases the connection.
	Close() error
}

// Opener opens a connection for a URI. Drivers register themselves with
// Register; Open picks one by scheme.
type Opener func(uri string, readOnly bool) (Conn, error)

var openers = map[string]Opener{}

// Register makes a driver available for URIs with the given scheme
// ("vsh", "test"). It is called from the drivers' init functions.
func Register(scheme string, open Opener) { openers[scheme] = open }

// Open connects to uri. readOnly connections refuse every mutating call
// with ErrOperationForbidden.
func Open(uri string, readOnly bool) (Conn, error) {
	scheme := uri
	for i := 0; i+2 < len(uri); i++ {
		if uri[i:i+3] == "://" {
			scheme = uri[:i]
			break
		}
	}
	if i := indexByte(scheme, '+'); i >= 0 {
		scheme = scheme[:i]
	}
	open, ok := openers[scheme]
	if !ok {
		return nil, Errorf(ErrNoConnect, "no connection driver available for %s", uri)
	}
	return open(uri, readOnly)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// Host is the connection-level API (virsh's "Host and Hypervisor" group).
type Host interface {
	URI() string
	ReadOnly() bool
	Hostname() (string, error)
	// HypervisorVersion returns the driver/hypervisor name and version as
	// virsh's "version" prints them ("QEMU" 7.2.0 becomes "QEMU", 7002000).
	HypervisorVersion() (name string, version uint64, err error)
	NodeInfo() (NodeInfo, error)
	// Capabilities returns the capabilities XML document.
	Capabilities() (string, error)
}

// NodeInfo is what virsh nodeinfo prints.
type NodeInfo struct {
	CPUModel       string `json:"cpu_model"`
	CPUs           int    `json:"cpus"`
	MHz            int    `json:"mhz"`
	NUMANodes      int    `json:"numa_nodes"`
	SocketsPerNode int    `json:"sockets_per_node"`
	CoresPerSocket int    `json:"cores_per_socket"`
	ThreadsPerCore int    `json:"threads_per_core"`
	MemoryKiB      uint64 `json:"memory_kib"`
}

// DomainState is libvirt's virDomainState.
type DomainState int

// Domain states with libvirt's numbering.
const (
	StateNoState DomainState = iota
	StateRunning
	StateBlocked
	StatePaused
	StateShutdown
	StateShutoff
	StateCrashed
	StatePMSuspended
)

// String returns virsh's text for the state ("running", "shut off").
func (s DomainState) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StateBlocked:
		return "idle"
	case StatePaused:
		return "paused"
	case StateShutdown:
		return "in shutdown"
	case StateShutoff:
		return "shut off"
	case StateCrashed:
		return "crashed"
	case StatePMSuspended:
		return "pmsuspended"
	}
	return "no state"
}

// StateReason is the reason code of a state, as in libvirt's
// virDomain<State>Reason enums; its text depends on the state, so virsh
// prints it with ReasonString.
type StateReason int

// Reasons for StateRunning (virDomainRunningReason).
const (
	RunningUnknown StateReason = iota
	RunningBooted
	RunningMigrated
	RunningRestored
	RunningFromSnapshot
	RunningUnpaused
	RunningMigrationCanceled
	RunningSaveCanceled
	RunningWakeup
	RunningCrashed
	RunningPostcopy
)

// Reasons for StatePaused (virDomainPausedReason).
const (
	PausedUnknown StateReason = iota
	PausedUser
	PausedMigration
	PausedSave
	PausedDump
	PausedIOError
	PausedWatchdog
	PausedFromSnapshot
	PausedShuttingDown
	PausedSnapshot
	PausedCrashed
)

// Reasons for StateShutoff (virDomainShutoffReason).
const (
	ShutoffUnknown StateReason = iota
	ShutoffShutdown
	ShutoffDestroyed
	ShutoffCrashed
	ShutoffMigrated
	ShutoffSaved
	ShutoffFailed
	ShutoffFromSnapshot
	ShutoffDaemon
)

// Reasons for StateShutdown and StateCrashed.
const (
	ShutdownUnknown StateReason = 0
	ShutdownUser    StateReason = 1
	CrashedUnknown  StateReason = 0
	CrashedPanicked StateReason = 1
)

// ReasonString returns virsh's text for a state reason ("booted",
// "destroyed"), as printed by domstate --reason.
func ReasonString(s DomainState, r StateReason) string {
	var names []string
	switch s {
	case StateRunning:
		names = []string{"unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled", "save canceled", "event wakeup", "crashed", "post-copy"}
	case StatePaused:
		names = []string{"unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog", "from snapshot", "shutting down", "creating snapshot", "crashed", "starting up", "post-copy", "post-copy failed"}
	case StateShutoff:
		names = []string{"unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"}
	case StateShutdown:
		names = []string{"unknown", "user"}
	case StateCrashed:
		names = []string{"unknown", "panicked"}
	case StateBlocked, StatePMSuspended:
		names = []string{"unknown"}
	default:
		names = []string{"unknown"}
	}
	if int(r) >= 0 && int(r) < len(names) {
		return names[r]
	}
	return "unknown"
}

// DomainInfo is a domain's identity and status: what list, dominfo and
// domstate print.
type DomainInfo struct {
	ID          int           `json:"id"` // -1 when not running
	Name        string        `json:"name"`
	UUID        string        `json:"uuid"`
	Title       string        `json:"title,omitempty"`
	OSType      string        `json:"os_type"`
	State       DomainState   `json:"-"`
	Reason      StateReason   `json:"-"`
	MaxMemKiB   uint64        `json:"max_memory_kib"`
	MemoryKiB   uint64        `json:"used_memory_kib"`
	VCPUs       int           `json:"vcpus"`
	CPUTime     time.Duration `json:"cpu_time_ns"`
	Persistent  bool          `json:"persistent"`
	Autostart   bool          `json:"autostart"`
	ManagedSave bool          `json:"managed_save"`
	// SecurityModel and SecurityDOI are printed by dominfo; "" hides them.
	SecurityModel string `json:"security_model,omitempty"`
	SecurityDOI   string `json:"security_doi,omitempty"`
	// SecurityLabel is dominfo's "Security label" line of a running
	// domain ("libvirt-test (enforcing)"); "" hides it.
	SecurityLabel string `json:"security_label,omitempty"`
}

// Active reports whether the domain is running (has an ID).
func (d DomainInfo) Active() bool { return d.ID >= 0 }

// ShutdownMode is virsh shutdown/reboot --mode.
type ShutdownMode string

// UndefineFlags are the options of undefine.
type UndefineFlags struct {
	ManagedSave, SnapshotsMetadata, CheckpointsMetadata, NVRAM, KeepNVRAM bool
	RemoveAllStorage, WipeStorage                                         bool
	Storage                                                               []string
}

// ModifyScope is virsh's --live/--config/--current.
type ModifyScope struct {
	Live, Config bool // neither means --current
}

// VCPUCount is what vcpucount prints; -1 marks a value that does not apply
// (e.g. live values of an inactive domain).
type VCPUCount struct {
	MaxConfig, MaxLive, CurrentConfig, CurrentLive int
}

// Domains is the domain part of the API.
type Domains interface {
	// ListDomains returns all domains, active and inactive.
	ListDomains() ([]DomainInfo, error)
	// LookupDomain resolves a domain as virsh does: ID, then UUID, then name.
	LookupDomain(ref string) (DomainInfo, error)
	// DefineDomain defines or redefines a persistent domain from XML.
	// file names the source for error positions. validate=false skips
	// schema validation (define --no-validate) but not semantic checks.
	DefineDomain(xml []byte, file string, validate bool) (DomainInfo, error)
	// CreateDomain starts a transient domain from XML.
	CreateDomain(xml []byte, file string, validate bool, paused bool) (DomainInfo, error)
	UndefineDomain(name string, flags UndefineFlags) error
	StartDomain(name string, paused bool) (DomainInfo, error)
	ShutdownDomain(name string, mode ShutdownMode) error
	DestroyDomain(name string, graceful bool) error
	RebootDomain(name string, mode ShutdownMode) error
	ResetDomain(name string) error
	SuspendDomain(name string) error
	ResumeDomain(name string) error
	// DomainXML returns the live definition of a running domain, or the
	// persistent one when inactive is true or the domain is not running.
	DomainXML(name string, inactive bool) ([]byte, error)
	SetDomainAutostart(name string, on bool) error
	// DomainMetadata returns the description (title=false) or title.
	DomainMetadata(name string, title bool, scope ModifyScope) (string, error)
	SetDomainMetadata(name string, title bool, text string, scope ModifyScope) error
	RenameDomain(name, newName string) error
	SetMemory(name string, kib uint64, scope ModifyScope) error
	SetMaxMemory(name string, kib uint64, scope ModifyScope) error
	SetVCPUs(name string, count int, maximum bool, scope ModifyScope) error
	VCPUCount(name string) (VCPUCount, error)
}

// ConsoleOpener is implemented by connections whose domains have a
// console (virsh console). It is optional: the shell checks for it with a
// type assertion.
type ConsoleOpener interface {
	// Console attaches to the console of a running domain; devname picks
	// a console or serial device ("" for the first), force steals a
	// session another client holds.
	Console(name string, devname string, force bool) (io.ReadWriteCloser, error)
}

// NetworkInfo is what net-list and net-info print.
type NetworkInfo struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	Active     bool   `json:"active"`
	Persistent bool   `json:"persistent"`
	Autostart  bool   `json:"autostart"`
	Bridge     string `json:"bridge"`
}

// DHCPLease is one line of net-dhcp-leases.
type DHCPLease struct {
	Expiry   time.Time `json:"expiry"`
	MAC      string    `json:"mac"`
	Protocol string    `json:"protocol"` // "ipv4" or "ipv6"
	Address  string    `json:"address"`  // with prefix, "192.168.122.10/24"
	Hostname string    `json:"hostname"`
	ClientID string    `json:"client_id"`
}

// Networks is the virtual network part of the API.
type Networks interface {
	ListNetworks() ([]NetworkInfo, error)
	LookupNetwork(ref string) (NetworkInfo, error) // name or UUID
	DefineNetwork(xml []byte, file string, validate bool) (NetworkInfo, error)
	CreateNetwork(xml []byte, file string, validate bool) (NetworkInfo, error)
	UndefineNetwork(name string) error
	StartNetwork(name string) error
	DestroyNetwork(name string) error
	NetworkXML(name string, inactive bool) ([]byte, error)
	SetNetworkAutostart(name string, on bool) error
	NetworkLeases(name string, mac string) ([]DHCPLease, error)
}

// PoolState is virStoragePoolState.
type PoolState int

// Pool states.
const (
	PoolInactive PoolState = iota
	PoolBuilding
	PoolRunning
	PoolDegraded
	PoolInaccessible
)

// String returns virsh's text for a pool state.
func (s PoolState) String() string {
	switch s {
	case PoolInactive:
		return "inactive"
	case PoolBuilding:
		return "building"
	case PoolRunning:
		return "running"
	case PoolDegraded:
		return "degraded"
	case PoolInaccessible:
		return "inaccessible"
	}
	return "unknown"
}

// PoolInfo is what pool-list and pool-info print.
type PoolInfo struct {
	Name            string    `json:"name"`
	UUID            string    `json:"uuid"`
	Type            string    `json:"type"`
	State           PoolState `json:"-"`
	Persistent      bool      `json:"persistent"`
	Autostart       bool      `json:"autostart"`
	CapacityBytes   uint64    `json:"capacity_bytes"`
	AllocationBytes uint64    `json:"allocation_bytes"`
	AvailableBytes  uint64    `json:"available_bytes"`
	TargetPath      string    `json:"target_path"`
}

// Active reports whether the pool is running.
func (p PoolInfo) Active() bool { return p.State == PoolRunning || p.State == PoolDegraded }

// VolumeInfo is what vol-list and vol-info print.
type VolumeInfo struct {
	Name            string `json:"name"`
	Pool            string `json:"pool"`
	Key             string `json:"key"`
	Path            string `json:"path"`
	Type            string `json:"type"` // "file", "block", "dir", ...
	Format          string `json:"format"`
	CapacityBytes   uint64 `json:"capacity_bytes"`
	AllocationBytes uint64 `json:"allocation_bytes"`
}

// PoolBuildFlags are pool-build's options.
type PoolBuildFlags struct{ NoOverwrite, Overwrite bool }

// PoolDeleteFlags are pool-delete's options.
type PoolDeleteFlags struct{}

// VolumeCreateAs carries vol-create-as's options.
type VolumeCreateAs struct {
	Name             string
	CapacityBytes    uint64
	AllocationBytes  uint64 // 0: sparse
	Format           string // "raw" or "qcow2"; "" means raw
	BackingVol       string // name, key or path
	BackingVolFormat string
	PreallocMetadata bool
	// AllocationSet tells that --allocation was given; without it libvirt
	// allocates the whole capacity, which the test driver reproduces.
	AllocationSet bool
}

// VolumeResizeFlags are vol-resize's options.
type VolumeResizeFlags struct{ Allocate, Delta, Shrink bool }

// VolumeTransfer carries vol-upload's and vol-download's options.
type VolumeTransfer struct {
	// Offset is where in the volume the transfer starts; Length how many
	// bytes it moves (0: to the end of the stream or of the volume).
	Offset, Length uint64
	// Sparse keeps holes: on upload, holes of a regular source file
	// become holes in the volume; on download, holes of the volume stay
	// holes in a regular destination file instead of being written as
	// zeros.
	Sparse bool
	// Progress, when set, is called as data moves with the bytes done and
	// the total (0 when unknown).
	Progress func(done, total uint64)
}

// Storage is the storage pool and volume part of the API.
type Storage interface {
	ListPools() ([]PoolInfo, error)
	LookupPool(ref string) (PoolInfo, error) // name or UUID
	DefinePool(xml []byte, file string, validate bool) (PoolInfo, error)
	CreatePool(xml []byte, file string, validate bool) (PoolInfo, error)
	BuildPool(name string, flags PoolBuildFlags) error
	StartPool(name string) error
	DestroyPool(name string) error
	DeletePool(name string) error
	UndefinePool(name string) error
	RefreshPool(name string) error
	PoolXML(name string, inactive bool) ([]byte, error)
	SetPoolAutostart(name string, on bool) error

	ListVolumes(pool string) ([]VolumeInfo, error)
	// LookupVolume finds a volume by name in pool, or (pool == "") by path
	// or key.
	LookupVolume(pool, ref string) (VolumeInfo, error)
	CreateVolume(pool string, xml []byte, file string, validate bool) (VolumeInfo, error)
	CreateVolumeAs(pool string, opts VolumeCreateAs) (VolumeInfo, error)
	// CloneVolume creates newName in the pool of src (or in pool when set).
	CloneVolume(src VolumeInfo, newName string) (VolumeInfo, error)
	DeleteVolume(vol VolumeInfo) error
	WipeVolume(vol VolumeInfo) error
	ResizeVolume(vol VolumeInfo, capacityBytes uint64, flags VolumeResizeFlags) error
	VolumeXML(vol VolumeInfo) ([]byte, error)
	// UploadVolume writes the bytes of r into the volume (vol-upload).
	UploadVolume(vol VolumeInfo, r io.Reader, opts VolumeTransfer) error
	// DownloadVolume copies the volume's bytes to w (vol-download).
	DownloadVolume(vol VolumeInfo, w io.Writer, opts VolumeTransfer) error
}

// PoolCapabilities is implemented by drivers that describe the storage
// pool types and volume formats they support (pool-capabilities).
type PoolCapabilities interface {
	// StoragePoolCapabilities returns libvirt's <storagepoolCapabilities>
	// document.
	StoragePoolCapabilities() ([]byte, error)
}

// ErrorCode classifies driver errors like libvirt's virErrorNumber; each
// code has the message prefix virsh prints.
type ErrorCode int

// Error codes. The comments give the text Error() puts before the detail.
const (
	ErrInternal             ErrorCode = iota // "internal error: "
	ErrOperationFailed                       // "operation failed: "
	ErrInvalidArg                            // "invalid argument: "
	ErrXML                                   // "XML error: "
	ErrXMLDetail                             // no prefix (parser messages)
	ErrConfigUnsupported                     // "unsupported configuration: "
	ErrNoSupport                             // "this function is not supported by the connection driver: "
	ErrOperationInvalid                      // "Requested operation is not valid: "
	ErrNoDomain                              // "Domain not found: "
	ErrNoNetwork                             // "Network not found: "
	ErrNoStoragePool                         // "Storage pool not found: "
	ErrNoStorageVol                          // "Storage volume not found: "
	ErrOperationForbidden                    // "operation forbidden: "
	ErrOverflow                              // "numerical overflow: "
	ErrSystem                                // no prefix (strerror-style)
	ErrNoConnect                             // no prefix
	ErrResourceBusy                          // "resource busy: "
	ErrOperationUnsupported                  // "Operation not supported: "
	ErrAgentUnresponsive                     // "Guest agent is not responding: "
	ErrTimeout                               // "Timed out during operation: "
)

var prefixes = map[ErrorCode]string{
	ErrInternal:             "internal error: ",
	ErrOperationFailed:      "operation failed: ",
	ErrInvalidArg:           "invalid argument: ",
	ErrXML:                  "XML error: ",
	ErrConfigUnsupported:    "unsupported configuration: ",
	ErrNoSupport:            "this function is not supported by the connection driver: ",
	ErrOperationInvalid:     "Requested operation is not valid: ",
	ErrNoDomain:             "Domain not found: ",
	ErrNoNetwork:            "Network not found: ",
	ErrNoStoragePool:        "Storage pool not found: ",
	ErrNoStorageVol:         "Storage volume not found: ",
	ErrOperationForbidden:   "operation forbidden: ",
	ErrOverflow:             "numerical overflow: ",
	ErrResourceBusy:         "resource busy: ",
	ErrOperationUnsupported: "Operation not supported: ",
	ErrAgentUnresponsive:    "Guest agent is not responding: ",
	ErrTimeout:              "Timed out during operation: ",
}

// Error is a driver error with a libvirt-style code.
type Error struct {
	Code   ErrorCode
	Detail string
	Err    error // optional cause
}

// Error returns the message virsh prints on its second "error:" line.
func (e *Error) Error() string { return prefixes[e.Code] + e.Detail }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted detail.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Code returns the code of err if it is an *Error, and ErrInternal otherwise.
func Code(err error) ErrorCode {
	for err != nil {
		if e, ok := err.(*Error); ok {
			return e.Code
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			break
		}
		err = u.Unwrap()
	}
	return ErrInternal
}
