package vmm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// The control protocol is one JSON request line and one JSON response line
// per operation. After a successful "console" request the connection
// carries raw console bytes in both directions.

// Operations understood by the VMM.
const (
	OpStatus   = "status"
	OpPause    = "pause"
	OpResume   = "resume"
	OpShutdown = "shutdown" // ask the guest to power off (cooperative)
	OpDestroy  = "destroy"  // stop the VM now
	OpReboot   = "reboot"   // ask the guest to reboot (cooperative)
	OpReset    = "reset"    // hard reset
	OpStats    = "stats"
	OpConsole  = "console"
	OpSetMem   = "setmem"
	OpMemStats = "memstats" // balloon and guest memory statistics
	OpNICs     = "nics"     // network interfaces with their counters
	OpSetLink  = "setlink"  // link state of one network interface
)

// Request is one control request.
type Request struct {
	Op    string `json:"op"`
	Force bool   `json:"force,omitempty"` // console: take over an attached client
	KiB   uint64 `json:"kib,omitempty"`   // setmem
	// Refresh asks the guest for fresh statistics first (memstats).
	Refresh bool `json:"refresh,omitempty"`
	// MAC names the interface and Up its new state (setlink).
	MAC string `json:"mac,omitempty"`
	Up  bool   `json:"up,omitempty"`
}

// Response answers a Request. Error is a sentence for the user.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Record *Record `json:"record,omitempty"`
	Stats  *Stats  `json:"stats,omitempty"`
	// Memory answers memstats, NICs answers nics.
	Memory *MemoryStats `json:"memory,omitempty"`
	NICs   []NICStatus  `json:"nics,omitempty"`
}

// Stats are the running VM's counters.
type Stats struct {
	// VCPUTimeNs is each vCPU thread's CPU time in nanoseconds.
	VCPUTimeNs []uint64 `json:"vcpu_time_ns"`
	// CPUTimeNs is the whole VMM process's CPU time.
	CPUTimeNs uint64 `json:"cpu_time_ns"`
	// MemoryKiB is the guest memory size; RSSKiB what the process uses.
	MemoryKiB uint64 `json:"memory_kib"`
	RSSKiB    uint64 `json:"rss_kib"`
	// BalloonKiB is the guest's current size as the balloon sees it (0
	// when there is no balloon).
	BalloonKiB uint64 `json:"balloon_kib,omitempty"`
}

// Client is a connection to one VMM's control socket.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
}

// ErrNotRunning means no VMM answers on the socket.
var ErrNotRunning = errors.New("domain's VMM is not running")

// Dial connects to the control socket at path.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	return &Client{conn: c, r: bufio.NewReader(c)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call sends one request and waits for its response (up to timeout).
func (c *Client) Call(req Request, timeout time.Duration) (Response, error) {
	var resp Response
	c.conn.SetDeadline(time.Now().Add(timeout))
	defer c.conn.SetDeadline(time.Time{})
	b, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return resp, fmt.Errorf("send %s request: %w", req.Op, err)
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return resp, fmt.Errorf("read %s response: %w", req.Op, err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return resp, fmt.Errorf("decode %s response: %w", req.Op, err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// Console asks for the serial console and, on success, returns the
// connection as a raw byte stream (reads: guest output; writes: guest input).
func (c *Client) Console(force bool) (net.Conn, error) {
	if _, err := c.Call(Request{Op: OpConsole, Force: force}, 10*time.Second); err != nil {
		return nil, err
	}
	if c.r.Buffered() > 0 {
		// Bytes the VMM sent right after the response belong to the stream.
		return &bufferedConn{Conn: c.conn, r: c.r}, nil
	}
	return c.conn, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Do dials the socket, sends one request and closes the connection.
func Do(socket string, req Request, timeout time.Duration) (Response, error) {
	c, err := Dial(socket)
	if err != nil {
		return Response{}, err
	}
	defer c.Close()
	return c.Call(req, timeout)
}
