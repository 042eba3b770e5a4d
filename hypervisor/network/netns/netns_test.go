package netns

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestThread checks that the thread really is elsewhere: a dummy link
// made there is invisible here, a child forked from it sees the link,
// and Do fails cleanly after Close.
func TestThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ns, err := New()
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed: apt-get install iproute2")
	}
	const link = "vshnsprobe0"
	var childSees string
	err = ns.Do(func() error {
		if out, err := exec.Command("ip", "link", "add", link, "type", "bridge").CombinedOutput(); err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		out, err := exec.Command("ip", "-o", "link", "show", link).CombinedOutput()
		childSees = string(out)
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		_, err = net.InterfaceByName(link)
		return err
	})
	if err != nil {
		t.Skipf("cannot make a bridge in the namespace: %v", err)
	}
	if !strings.Contains(childSees, link) {
		t.Errorf("a child of the thread does not see the link: %q", childSees)
	}
	if _, err := net.InterfaceByName(link); err == nil {
		t.Errorf("%s leaked into the test's own namespace", link)
	}
	ns.Close()
	ns.Close()
	if err := ns.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close = %v, want ErrClosed", err)
	}
}
