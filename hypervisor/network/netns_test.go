package network

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The namespace tests never touch the host's network: every interface,
// address, rule and daemon they make lives in network namespaces held by
// "unshare --net sleep" processes the test starts and kills. Go code runs
// inside one on a locked OS thread that has joined it and is thrown away
// afterwards (the goroutine exits without unlocking).

// requireNetns skips unless the test can make namespaces and has the tools.
func requireNetns(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root")
	}
	for _, tool := range append([]string{"unshare", "nsenter", "ip", "sleep"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces: %v: %s", err, out)
	}
}

// netns is a network namespace held by a sleeping process.
type netns struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid  int
	path string
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ns := &netns{t: t, cmd: cmd, pid: cmd.Process.Pid, path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// unshare switches namespace and then execs sleep.
	for i := 0; ; i++ {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ns.pid))
		cur, err := os.Readlink(ns.path)
		if err == nil && cur != self && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if i == 1000 {
			t.Fatalf("namespace holder %d never entered its namespace", ns.pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ns.run("ip", "link", "set", "lo", "up")
	return ns
}

// run runs a command inside the namespace and returns its output.
func (ns *netns) run(args ...string) string {
	ns.t.Helper()
	out, err := ns.try(args...)
	if err != nil {
		ns.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (ns *netns) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.path, "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// do runs fn on an OS thread that joined the namespace; the thread is
// discarded afterwards.
func (ns *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with the goroutine.
		f, err := os.Open(ns.path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
