package local

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// Crash safety: a child process runs define / edit / undefine loops and is
// SIGKILLed at random moments; after every kill the state directory must
// parse completely and hold exactly what the acknowledged operations (plus
// possibly the one in flight) produced.

const crashNames = 4

// crashOp is the i-th operation of the deterministic crash workload.
func crashOp(i int) (name, kind string) {
	name = "crash" + strconv.Itoa(i%crashNames)
	switch (i / crashNames) % 3 {
	case 0:
		return name, "define"
	case 1:
		return name, "edit"
	}
	return name, "undefine"
}

func crashUUID(name string) string {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "crash"))
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
}

func crashXML(name string, i int) string {
	return "<domain type='kvm'>\n  <name>" + name + "</name>\n  <uuid>" + crashUUID(name) + "</uuid>\n  <description>gen-" +
		strconv.Itoa(i) + "</description>\n  <memory unit='KiB'>65536</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n"
}

func applyCrashOp(c driver.Conn, i int) error {
	name, kind := crashOp(i)
	switch kind {
	case "define":
		_, err := c.DefineDomain([]byte(crashXML(name, i)), name+".xml", false)
		return err
	case "edit":
		return c.SetDomainMetadata(name, false, "edit-"+strconv.Itoa(i), driver.ModifyScope{Config: true})
	}
	return c.UndefineDomain(name, driver.UndefineFlags{})
}

// crashModel returns the expected descriptions (by name) after ops 0..n-1.
func crashModel(n int) map[string]string {
	m := map[string]string{}
	for i := 0; i < n; i++ {
		name, kind := crashOp(i)
		_, exists := m[name]
		switch {
		case kind == "define":
			m[name] = "gen-" + strconv.Itoa(i)
		case kind == "edit" && exists:
			m[name] = "edit-" + strconv.Itoa(i)
		case kind == "undefine":
			delete(m, name)
		}
	}
	return m
}

// loggedOps returns how many operations the log acknowledges.
func loggedOps(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, err := strconv.Atoi(strings.TrimSpace(s.Text())); err == nil && v == n {
			n++
		}
	}
	return n
}

func crasherMain() {
	logPath := os.Getenv("VSH_TEST_CRASHER")
	start := loggedOps(logPath)
	c, err := driver.Open("vsh:///session", false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		os.Exit(2)
	}
	fmt.Println("ready")
	for i := start; ; i++ {
		applyCrashOp(c, i) // edit/undefine of a missing domain fail, as the model expects
		fmt.Fprintf(log, "%d\n", i)
		log.Sync()
	}
}

// diskState parses every definition file; any file that does not parse
// whole fails the test.
func diskState(t *testing.T, home string) map[string]string {
	t.Helper()
	dir := filepath.Join(home, "etc", "domains")
	names, err := listXML(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n+".xml"))
		if err != nil {
			t.Fatalf("read %s: %v", n, err)
		}
		d, err := domxml.ParseDomain(n+".xml", b, false)
		if err != nil {
			t.Fatalf("definition %s is corrupt: %v\n%s", n, err, b)
		}
		if d.Name != n || d.UUID != crashUUID(n) {
			t.Fatalf("definition %s holds %s/%s", n, d.Name, d.UUID)
		}
		out[n] = d.Description
	}
	return out
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestCrashSafety(t *testing.T) {
	home := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "ops.log")
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "VSH_HOME="+home, "VSH_TEST_CRASHER="+logPath)
		cmd.Stderr = os.Stderr
		ready, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill only once the workload runs, at a random moment in it.
		bufio.NewReader(ready).ReadString('\n')
		time.Sleep(time.Duration(10+rng.Intn(60)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()

		n := loggedOps(logPath)
		got := diskState(t, home)
		if !sameMap(got, crashModel(n)) && !sameMap(got, crashModel(n+1)) {
			t.Fatalf("round %d: after %d acknowledged ops the state is %v, want %v (or %v with the op in flight)",
				round, n, got, crashModel(n), crashModel(n+1))
		}
		// The driver agrees with the files, temp files and all.
		t.Setenv("VSH_HOME", home)
		c, err := driver.Open("vsh:///session", true)
		if err != nil {
			t.Fatal(err)
		}
		list, err := c.ListDomains()
		if err != nil {
			t.Fatalf("round %d: list: %v", round, err)
		}
		if len(list) != len(got) {
			t.Fatalf("round %d: list %+v, files %v", round, list, got)
		}
	}
	t.Logf("%d operations acknowledged across %d kills", loggedOps(logPath), rounds)
	if n := loggedOps(logPath); n < rounds {
		t.Fatalf("only %d operations in %d rounds: the workload did not run", n, rounds)
	}
}

// Concurrency: goroutines and two worker processes define and undefine
// the same and different domains at once, and allocate domain IDs.

func workerMain() {
	id := os.Getenv("VSH_TEST_WORKER")
	c, err := driver.Open("vsh:///session", false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := churn(c, "w"+id, 60); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conn := c.(*Conn)
	for i := 0; i < 50; i++ {
		l, err := conn.write("test")
		if err != nil {
			os.Exit(1)
		}
		n, err := nextCounter(conn.idCounterPath())
		l.unlock()
		if err != nil {
			os.Exit(1)
		}
		fmt.Println(n)
	}
	os.Exit(0)
}

// churn defines, edits and undefines shared and private domains; only the
// errors a racing peer can cause are tolerated.
func churn(c driver.Conn, who string, n int) error {
	for i := 0; i < n; i++ {
		shared := "shared" + strconv.Itoa(i%3)
		mine := who + "-" + strconv.Itoa(i%5)
		for _, name := range []string{shared, mine} {
			x := "<domain type='kvm'><name>" + name + "</name><uuid>" + fakeUUID(name) + "</uuid><memory>65536</memory><os><type>hvm</type></os></domain>"
			if _, err := c.DefineDomain([]byte(x), name+".xml", false); err != nil {
				return fmt.Errorf("define %s: %w", name, err)
			}
			if err := c.SetDomainMetadata(name, true, who, driver.ModifyScope{Config: true}); err != nil && driver.Code(err) != driver.ErrNoDomain {
				return fmt.Errorf("title %s: %w", name, err)
			}
			if _, err := c.ListDomains(); err != nil {
				return fmt.Errorf("list: %w", err)
			}
			if i%2 == 1 {
				if err := c.UndefineDomain(name, driver.UndefineFlags{}); err != nil && driver.Code(err) != driver.ErrNoDomain {
					return fmt.Errorf("undefine %s: %w", name, err)
				}
			}
		}
	}
	return nil
}

// fakeUUID derives a fixed UUID from a name so that every writer of a name
// agrees on it.
func fakeUUID(name string) string {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", uint32(h>>32), h&0xffffffffffff)
}

func TestConcurrentWriters(t *testing.T) {
	home := t.TempDir()
	t.Setenv("VSH_HOME", home)
	var wg sync.WaitGroup
	outs := make([][]byte, 2)
	errs := make([]error, 2+4)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "VSH_TEST_WORKER="+strconv.Itoa(w))
			cmd.Stderr = os.Stderr
			outs[w], errs[w] = cmd.Output()
		}(w)
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c, err := driver.Open("vsh:///session", false)
			if err != nil {
				errs[2+g] = err
				return
			}
			errs[2+g] = churn(c, "g"+strconv.Itoa(g), 30)
		}(g)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	// IDs from both processes are unique and gapless.
	var ids []int
	for _, o := range outs {
		for _, f := range strings.Fields(string(o)) {
			n, _ := strconv.Atoi(f)
			ids = append(ids, n)
		}
	}
	sort.Ints(ids)
	if len(ids) != 100 {
		t.Fatalf("got %d IDs, want 100", len(ids))
	}
	for i, id := range ids {
		if id != i+1 {
			t.Fatalf("IDs not unique and monotonic: %v", ids)
		}
	}
	// Every definition left parses and the listing agrees with the files.
	dir := filepath.Join(home, "etc", "domains")
	names, _ := listXML(dir)
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n+".xml"))
		if _, err := domxml.ParseDomain(n, b, false); err != nil {
			t.Fatalf("%s corrupt: %v", n, err)
		}
	}
	c, _ := driver.Open("vsh:///session", true)
	list, err := c.ListDomains()
	if err != nil || len(list) != len(names) {
		t.Fatalf("list %d domains (%v), %d files", len(list), err, len(names))
	}
}
