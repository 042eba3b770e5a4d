package vmm

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestZombieIsNotAlive: a VMM that exited but is not reaped yet (its
// parent is slow) must read as gone, or destroy waits for the reaper.
func TestZombieIsNotAlive(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot run /bin/true: %v", err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	// Not reaped: the child stays a zombie until cmd.Wait.
	for i := 0; i < 200; i++ {
		if st, _, err := procStat(pid); err == nil && st == 'Z' {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, _, err := procStat(pid); err != nil || st != 'Z' {
		t.Skipf("child did not become a zombie (state %q, %v)", st, err)
	}
	if processAlive(pid, 0) {
		t.Error("zombie process reads as alive")
	}
	if !processAlive(os.Getpid(), 0) {
		t.Error("this process reads as not alive")
	}
}
