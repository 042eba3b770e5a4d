package vmm

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
)

// DefaultConsoleLogMax caps the console log; past it the log is rotated
// once (to NAME.log.1), so a chatty guest never uses more than twice this.
const DefaultConsoleLogMax = 1 << 20

// ErrConsoleBusy is returned when a console client is attached and the new
// one did not ask to force its way in; the text is libvirt's.
var ErrConsoleBusy = errors.New("operation failed: Active console session exists for this domain")

// consoleHub connects the guest's serial port to the console log and to at
// most one attached client.
type consoleHub struct {
	mu     sync.Mutex
	log    *cappedLog
	client net.Conn
	// input delivers client keystrokes to the guest's UART; it is swapped
	// when the machine is rebuilt on reboot.
	input func([]byte)
}

// Write receives guest output.
func (h *consoleHub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log != nil {
		h.log.Write(p)
	}
	if h.client != nil {
		if _, err := h.client.Write(p); err != nil {
			h.client.Close()
			h.client = nil
		}
	}
	return len(p), nil
}

func (h *consoleHub) setInput(f func([]byte)) {
	h.mu.Lock()
	h.input = f
	h.mu.Unlock()
}

// attach makes conn the console client and copies its input to the guest
// until it disconnects or is replaced.
// accepted runs under the hub's lock once the client is accepted, before
// any guest output is forwarded to it.
func (h *consoleHub) attach(conn net.Conn, force bool, accepted func() error) error {
	h.mu.Lock()
	if h.client != nil {
		if !force {
			h.mu.Unlock()
			return ErrConsoleBusy
		}
		h.client.Close()
	}
	if err := accepted(); err != nil {
		h.mu.Unlock()
		return err
	}
	h.client = conn
	h.mu.Unlock()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				h.mu.Lock()
				in, current := h.input, h.client == conn
				h.mu.Unlock()
				if !current {
					return
				}
				if in != nil {
					in(append([]byte(nil), buf[:n]...))
				}
			}
			if err != nil {
				h.mu.Lock()
				if h.client == conn {
					h.client = nil
				}
				h.mu.Unlock()
				conn.Close()
				return
			}
		}
	}()
	return nil
}

// detach closes the client, if any.
func (h *consoleHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client != nil {
		h.client.Close()
		h.client = nil
	}
	if h.log != nil {
		h.log.Close()
	}
}

// cappedLog appends to a file and rotates it once it passes max bytes.
type cappedLog struct {
	path string
	max  int64
	f    *os.File
	size int64
}

func openCappedLog(path string, max int64) (*cappedLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &cappedLog{path: path, max: max, f: f, size: st.Size()}, nil
}

func (l *cappedLog) Write(p []byte) (int, error) {
	if l.f == nil {
		return 0, io.ErrClosedPipe
	}
	if l.size+int64(len(p)) > l.max {
		l.f.Close()
		os.Rename(l.path, l.path+".1")
		f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			l.f = nil
			return 0, err
		}
		l.f, l.size = f, 0
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

func (l *cappedLog) Close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
