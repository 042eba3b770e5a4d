// Package virtiopayload builds a small freestanding guest "kernel" that
// drives virtio-mmio devices from guest ring 3, for engine tests and
// benchmarks of the virtio-blk, virtio-rng and virtio-net devices on real
// KVM.
//
// The payload is C and assembly (src/payload.c, src/start.S, src/payload.ld,
// embedded here) compiled with the host's gcc at test time: an ELF64 executable
// with one PT_LOAD segment at 1 MiB that the engine boots like a vmlinux.
// Its first instructions build user-accessible identity page tables for
// the low 4 GiB and a GDT with ring-3 segments and iretq to ring 3 with
// IOPL=3, because hosts whose KVM is nested PVM emulate guest ring 0 about
// 1000 times slower than native while ring 3 runs at full speed; IOPL=3
// keeps COM1 and the ACPI sleep port reachable with in/out.
//
// The payload finds its devices in the virtio_mmio.device= parameters of
// the command line, negotiates VERSION_1, sets up one polled split
// virtqueue per device, and reports on COM1 in lines starting with "VP-"
// (see Cmdline for the workloads), then powers off.
package virtiopayload

import (
	"bytes"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

//go:embed src/start.S src/payload.c src/payload.ld
var sources embed.FS

// ErrNoCompiler is returned (wrapped) by Build when gcc is not installed.
var ErrNoCompiler = errors.New("gcc not found: apt-get install gcc")

// Console lines the payload writes.
const (
	StartMarker = "VP-START"
	OKPrefix    = "VP-OK "
	FailPrefix  = "VP-FAIL "
	BenchPrefix = "VP-BENCH "
	EndPass     = "VP-END pass"
	EndFail     = "VP-END fail"
)

// cflags make a freestanding, position-dependent ring-3 program with no
// SSE (the guest never enables it) and no stack protector (no %fs).
var cflags = []string{
	"-O2", "-ffreestanding", "-nostdlib", "-static", "-no-pie", "-fno-pic",
	"-fno-stack-protector", "-fno-asynchronous-unwind-tables",
	"-mno-red-zone", "-mgeneral-regs-only", "-mcmodel=small",
	"-Wall", "-Werror", "-Wl,--build-id=none", "-Wl,-n",
}

// Build compiles the payload into dir and returns the path of the ELF
// file. It fails with ErrNoCompiler when gcc is missing.
func Build(dir string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("build virtio payload: %w", ErrNoCompiler)
	}
	src := filepath.Join(dir, "virtiopayload-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("build virtio payload: %w", err)
	}
	for _, name := range []string{"start.S", "payload.c", "payload.ld"} {
		b, err := sources.ReadFile("src/" + name)
		if err != nil {
			return "", fmt.Errorf("build virtio payload: %w", err)
		}
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			return "", fmt.Errorf("build virtio payload: %w", err)
		}
	}
	out := filepath.Join(dir, "virtio-payload.elf")
	args := append(append([]string{}, cflags...),
		"-T", filepath.Join(src, "payload.ld"), "-o", out,
		filepath.Join(src, "start.S"), filepath.Join(src, "payload.c"))
	cmd := exec.Command(gcc, args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build virtio payload: gcc: %v: %s", err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}

// Workloads the payload runs, selected with "vp=" on the command line.
const (
	// ModeTest exercises every device: on each block device capacity,
	// GET_ID, a read of sectors 64..71 (its FNV-1a printed), and on a
	// writable disk Pattern written to sectors 0..7 and the last 8
	// sectors, read back, compared and flushed; on a read-only one a write
	// that must fail with VIRTIO_BLK_S_IOERR. On each RNG two 64-byte
	// reads that must be non-zero and different.
	ModeTest = "rw"
	// ModeBench times sequential then random 4 KiB writes and reads on
	// the first block device.
	ModeBench = "bench"
	// ModeHostile plays a malicious guest on the first block device: a
	// buffer outside guest RAM, a looping descriptor chain, an available
	// index more than a queue ahead. Each must be refused (an error
	// status, or DEVICE_NEEDS_RESET) and is printed on a "VP-HOSTILE"
	// line; then the reset device must read sectors 64..71 again.
	ModeHostile = "hostile"
	// ModeNet exchanges frames with the host through the first network
	// device's tap: the payload reads its MAC and link state from the
	// config space, broadcasts HelloFrames until the host sends a
	// DataFrame, answers every DataFrame with an echo (see ParseEcho), and
	// powers off after a QuitFrame, printing "VP-OK net0 mac=... link=...
	// hellos=N echoed=N rx-bytes=N other=N". It gives up after 30 s.
	ModeNet = "net"
)

// EtherType is the type of every frame of the ModeNet exchange: IEEE
// 802's local experimental ethertype 1, so no other traffic on the link is
// taken for it.
const EtherType = 0x88b5

// ModeNet payload tags: the first byte after the Ethernet header.
const (
	hostData = 'D'
	hostQuit = 'Q'
)

var (
	helloTag = []byte("VP-HELLO ")
	echoTag  = []byte("VP-ECHO ")
)

// ethernet returns a frame header from src to dst of type EtherType.
func ethernet(dst, src net.HardwareAddr) []byte {
	f := make([]byte, 14, 64)
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], EtherType)
	return f
}

// DataFrame returns a frame from src to the guest's MAC dst carrying
// data, which the payload echoes. data may be up to 1499 bytes.
func DataFrame(dst, src net.HardwareAddr, data []byte) []byte {
	return append(append(ethernet(dst, src), hostData), data...)
}

// QuitFrame returns the frame that ends the payload's exchange.
func QuitFrame(dst, src net.HardwareAddr) []byte {
	f := append(ethernet(dst, src), hostQuit)
	return append(f, make([]byte, 60-len(f))...)
}

// ParseHello reports whether frame is one of the payload's hello
// broadcasts and returns its sender and sequence number.
func ParseHello(frame []byte) (src net.HardwareAddr, seq uint64, ok bool) {
	body, ok := vpBody(frame)
	if !ok || !bytes.HasPrefix(body, helloTag) || len(body) < len(helloTag)+8 {
		return nil, 0, false
	}
	seq, err := strconv.ParseUint(string(body[len(helloTag):len(helloTag)+8]), 16, 64)
	if err != nil {
		return nil, 0, false
	}
	return net.HardwareAddr(frame[6:12]), seq, true
}

// Echo is the payload's answer to a DataFrame.
type Echo struct {
	Src, Dst net.HardwareAddr
	// FNV is FNV1a of the whole data frame as the guest received it.
	FNV uint32
	// Data is the data frame's payload (from its tag byte on) as the guest
	// sent it back.
	Data []byte
}

// ParseEcho reports whether frame is the payload's echo of a data frame.
func ParseEcho(frame []byte) (Echo, bool) {
	body, ok := vpBody(frame)
	if !ok || !bytes.HasPrefix(body, echoTag) || len(body) < len(echoTag)+9 || body[len(echoTag)+8] != ' ' {
		return Echo{}, false
	}
	sum, err := strconv.ParseUint(string(body[len(echoTag):len(echoTag)+8]), 16, 32)
	if err != nil {
		return Echo{}, false
	}
	return Echo{
		Dst: net.HardwareAddr(frame[0:6]), Src: net.HardwareAddr(frame[6:12]),
		FNV: uint32(sum), Data: body[len(echoTag)+9:],
	}, true
}

// vpBody returns what follows the Ethernet header of an EtherType frame.
func vpBody(frame []byte) ([]byte, bool) {
	if len(frame) < 14 || binary.BigEndian.Uint16(frame[12:]) != EtherType {
		return nil, false
	}
	return frame[14:], true
}

// Cmdline returns the kernel command line for mode. For ModeBench, ops is
// the number of 4 KiB requests per phase and depth how many the payload
// keeps in flight (1-16); they are ignored otherwise.
func Cmdline(mode string, ops, depth int) string {
	if mode == ModeBench {
		return fmt.Sprintf("vp=%s vpops=%d vpqd=%d", mode, ops, depth)
	}
	return "vp=" + mode
}

// Pattern is the byte the payload writes at offset i of sector sector.
func Pattern(sector uint64, i uint32) byte {
	return byte(sector*37) ^ byte(i*13) ^ byte(i>>8) ^ 0xa5
}

// FNV1a is the 32-bit FNV-1a hash the payload prints for what it read.
func FNV1a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// Phase is one timed phase of ModeBench as the payload reported it.
type Phase struct {
	Name   string // seq-write, seq-read, rand-write, rand-read
	Ops    uint64
	Bytes  uint64
	Cycles uint64
	// MinBatchCycles is the fastest batch of Depth requests: the
	// request path's cost without host scheduling delays.
	MinBatchCycles uint64
}

// BenchResult is the parsed output of a ModeBench run.
type BenchResult struct {
	TSCKHz uint64 // from tsc_early_khz on the command line; 0 if unknown
	Depth  int
	Phases []Phase
}

// MBPerSec returns p's throughput in MB/s (10^6 bytes) given the TSC
// frequency, or 0 when it is unknown.
func (p Phase) MBPerSec(tscKHz uint64) float64 {
	if tscKHz == 0 || p.Cycles == 0 {
		return 0
	}
	secs := float64(p.Cycles) / (float64(tscKHz) * 1000)
	return float64(p.Bytes) / secs / 1e6
}

// ParseBench extracts the benchmark results from the payload's console
// output. It fails if the payload reported a failure or no phases.
func ParseBench(console string) (BenchResult, error) {
	var r BenchResult
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, FailPrefix):
			return r, fmt.Errorf("payload failed: %s", line)
		case strings.HasPrefix(line, "VP-TSC "):
			kv := fields(line)
			r.TSCKHz, _ = strconv.ParseUint(kv["khz"], 10, 64)
			d, _ := strconv.Atoi(kv["qd"])
			r.Depth = d
		case strings.HasPrefix(line, BenchPrefix):
			f := strings.Fields(line)
			if len(f) < 2 {
				return r, fmt.Errorf("malformed bench line %q", line)
			}
			kv := fields(line)
			p := Phase{Name: f[1]}
			var err1, err2, err3 error
			p.Ops, err1 = strconv.ParseUint(kv["ops"], 10, 64)
			p.Bytes, err2 = strconv.ParseUint(kv["bytes"], 10, 64)
			p.Cycles, err3 = strconv.ParseUint(kv["cycles"], 10, 64)
			if err := errors.Join(err1, err2, err3); err != nil {
				return r, fmt.Errorf("malformed bench line %q: %w", line, err)
			}
			p.MinBatchCycles, _ = strconv.ParseUint(kv["min-batch-cycles"], 10, 64)
			r.Phases = append(r.Phases, p)
		}
	}
	if len(r.Phases) == 0 {
		return r, errors.New("payload reported no benchmark phases")
	}
	return r, nil
}

// fields parses the key=value words of a line.
func fields(line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}
