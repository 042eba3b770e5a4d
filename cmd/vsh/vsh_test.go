package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// vshBin is the vsh binary built once by TestMain.
var vshBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vsh-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vshBin = filepath.Join(dir, "vsh")
	build := exec.Command("go", "build", "-o", vshBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build ./cmd/vsh:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	rc := m.Run()
	os.RemoveAll(dir)
	os.Exit(rc)
}

type result struct {
	stdout, stderr string
	rc             int
}

// env returns an isolated environment: VSH_HOME and XDG dirs in a temp
// directory, no editor, the test driver as default URI.
func testEnv(t *testing.T) []string {
	home := t.TempDir()
	return append(os.Environ(),
		"VSH_HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"), "HOME="+home,
		"VSH_DEFAULT_URI=test:///default")
}

// run runs prog with args in testdata, stdin as given.
func run(t *testing.T, env []string, stdin string, prog string, args ...string) result {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = "testdata"
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", prog, err)
	}
	return result{out.String(), errb.String(), rc}
}

var (
	uuidRE    = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	cpuTimeRE = regexp.MustCompile(`CPU time:( +)[0-9]+\.[0-9]s`)
	timingRE  = regexp.MustCompile(`\(Time: [0-9.]+ ms\)`)
)

// normalize hides what legitimately differs between runs: generated
// UUIDs (except the test driver's fixed ones), CPU times and timings.
func normalize(s string) string {
	s = uuidRE.ReplaceAllStringFunc(s, func(u string) string {
		switch u {
		case "6695eb01-f6a4-8304-79aa-97f2502e193f", "dd8fe884-6c02-601e-7551-cca97df1c5df", "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566":
			return u
		}
		return "UUID"
	})
	s = cpuTimeRE.ReplaceAllString(s, "CPU time:${1}T")
	return timingRE.ReplaceAllString(s, "(Time: T ms)")
}

const testDominfo = `Id:             1
Name:           test
UUID:           6695eb01-f6a4-8304-79aa-97f2502e193f
OS Type:        linux
State:          running
CPU(s):         2
CPU time:       1795627518.9s
Max memory:     8388608 KiB
Used memory:    2097152 KiB
Persistent:     yes
Autostart:      disable
Managed save:   no
Security model: testSecurity
Security DOI:   
Security label: libvirt-test (enforcing)

`

// TestCaptured runs commands against test:///default and compares with
// the outputs captured from virsh 9.0 (shared/reference/captures).
func TestCaptured(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stdin  string
		env    []string // extra environment
		stdout string
		stderr string
		rc     int
	}{
		{name: "list --all", args: []string{"list", "--all"}, stdout: " Id   Name   State\n----------------------\n 1    test   running\n\n"},
		{name: "list", args: []string{"list"}, stdout: " Id   Name   State\n----------------------\n 1    test   running\n\n"},
		{name: "list --name", args: []string{"list", "--name"}, stdout: "test\n\n"},
		{name: "list --uuid", args: []string{"list", "--all", "--uuid"}, stdout: "6695eb01-f6a4-8304-79aa-97f2502e193f\n\n"},
		{name: "list --title", args: []string{"list", "--all", "--title"}, stdout: " Id   Name   State     Title\n------------------------------\n 1    test   running   \n\n"},
		{name: "list --table", args: []string{"list", "--all", "--table"}, stdout: " Id   Name   State\n----------------------\n 1    test   running\n\n"},
		{name: "dominfo", args: []string{"dominfo", "test"}, stdout: testDominfo},
		{name: "dominfo by id", args: []string{"dominfo", "1"}, stdout: testDominfo},
		{name: "dominfo by uuid", args: []string{"dominfo", "6695eb01-f6a4-8304-79aa-97f2502e193f"}, stdout: testDominfo},
		{name: "dominfo --domain=", args: []string{"dominfo --domain=test"}, stdout: testDominfo},
		{name: "dominfo -- test", args: []string{"dominfo", "--", "test"}, stdout: testDominfo},
		{name: "domstate", args: []string{"domstate", "test"}, stdout: "running\n\n"},
		{name: "domstate --reason", args: []string{"domstate", "test", "--reason"}, stdout: "running (unknown)\n\n"},
		{name: "domid", args: []string{"domid", "test"}, stdout: "1\n\n"},
		{name: "domuuid", args: []string{"domuuid", "test"}, stdout: "6695eb01-f6a4-8304-79aa-97f2502e193f\n\n"},
		{name: "net-list", args: []string{"net-list", "--all"}, stdout: " Name      State    Autostart   Persistent\n--------------------------------------------\n default   active   no          yes\n\n"},
		{name: "pool-list", args: []string{"pool-list", "--all"}, stdout: " Name           State    Autostart\n------------------------------------\n default-pool   active   no\n\n"},
		{name: "pool-list --details", args: []string{"pool-list", "--all", "--details"}, stdout: " Name           State     Autostart   Persistent   Capacity     Allocation   Available\n-----------------------------------------------------------------------------------------\n default-pool   running   no          yes          100.00 GiB   0.00 B       100.00 GiB\n\n"},
		{name: "vol-list", args: []string{"vol-list", "default-pool"}, stdout: " Name   Path\n--------------\n\n"},
		{name: "vol-list --details", args: []string{"vol-list", "default-pool", "--details"}, stdout: " Name   Path   Type   Capacity   Allocation\n---------------------------------------------\n\n"},
		{name: "nodeinfo", args: []string{"nodeinfo"}, stdout: "CPU model:           i686\nCPU(s):              16\nCPU frequency:       1400 MHz\nCPU socket(s):       2\nCore(s) per socket:  2\nThread(s) per core:  2\nNUMA cell(s):        2\nMemory size:         3145728 KiB\n\n"},
		{name: "hostname", args: []string{"hostname"}, stdout: "vm\n\n"},
		{name: "uri", args: []string{"uri"}, stdout: "test:///default\n\n"},
		{name: "net-info", args: []string{"net-info", "default"}, stdout: "Name:           default\nUUID:           dd8fe884-6c02-601e-7551-cca97df1c5df\nActive:         yes\nPersistent:     yes\nAutostart:      no\nBridge:         virbr0\n\n"},
		{name: "pool-info", args: []string{"pool-info", "default-pool"}, stdout: "Name:           default-pool\nUUID:           dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566\nState:          running\nPersistent:     yes\nAutostart:      no\nCapacity:       100.00 GiB\nAllocation:     0.00 B\nAvailable:      100.00 GiB\n\n"},
		{name: "vcpucount", args: []string{"vcpucount", "test"}, stdout: "maximum      config         2\nmaximum      live           2\ncurrent      config         2\ncurrent      live           2\n\n"},

		{name: "domiflist", args: []string{"domiflist", "test"}, stdout: " Interface   Type      Source    Model   MAC\n------------------------------------------------------------\n testnet0    network   default   -       aa:bb:cc:dd:ee:ff\n\n"},

		// Errors.
		{name: "dominfo nosuch", args: []string{"dominfo", "nosuch"}, stdout: "\n", stderr: "error: failed to get domain 'nosuch'\n", rc: 1},
		{name: "net-info nosuch", args: []string{"net-info", "nosuch"}, stdout: "\n", stderr: "error: failed to get network 'nosuch'\nerror: Network not found: no network with matching name 'nosuch'\n", rc: 1},
		{name: "pool-info nosuch", args: []string{"pool-info", "nosuch"}, stdout: "\n", stderr: "error: failed to get pool 'nosuch'\nerror: Storage pool not found: no storage pool with matching name 'nosuch'\n", rc: 1},
		{name: "vol-info nosuch", args: []string{"vol-info", "x"}, stdout: "\n", stderr: "error: failed to get vol 'x', specifying --pool might help\nerror: Storage volume not found: no storage vol with matching path 'x'\n", rc: 1},
		{name: "start running", args: []string{"start", "test"}, stdout: "\n", stderr: "error: Domain is already active\n", rc: 1},
		{name: "define missing file", args: []string{"define", "/nonexistent.xml"}, stdout: "\n", stderr: "error: Failed to open file '/nonexistent.xml': No such file or directory\n", rc: 1},
		{name: "unknown command", args: []string{"nosuchcmd"}, stderr: "error: unknown command: 'nosuchcmd'\n", rc: 1},
		{name: "no abbreviations", args: []string{"domi"}, stderr: "error: unknown command: 'domi'\n", rc: 1},
		{name: "required option", args: []string{"start"}, stderr: "error: command 'start' requires <domain> option\n", rc: 1},
		{name: "unknown option", args: []string{"dominfo", "--bogus"}, stderr: "error: command 'dominfo' doesn't support option --bogus\n", rc: 1},
		{name: "unexpected data", args: []string{"list", "--all", "extra"}, stderr: "error: unexpected data 'extra'\n", rc: 1},
		{name: "duplicate option", args: []string{"dominfo test --domain test"}, stderr: "error: option --domain already seen\n", rc: 1},
		{name: "missing value", args: []string{"shutdown", "test", "--mode"}, stderr: "error: expected syntax: --mode <string>\n", rc: 1},
		{name: "bad mode", args: []string{"shutdown", "test", "--mode", "bogus"}, stdout: "\n", stderr: "error: Unknown mode bogus value, expecting 'acpi', 'agent', 'initctl', 'signal', or 'paravirt'\n", rc: 1},
		{name: "help nosuch", args: []string{"help", "nosuch"}, stdout: "\n", stderr: "error: command or command group 'nosuch' doesn't exist\n", rc: 1},
		{name: "scaled fraction", args: []string{"setmem", "test", "1.5G"}, stdout: "\n", stderr: "error: Scaled numeric value '1.5G' for <size> option is malformed or out of range\nerror: invalid argument: unknown suffix '.5G'\n", rc: 1},
		{name: "numeric", args: []string{"setvcpus", "test", "x"}, stdout: "\n", stderr: "error: Numeric value 'x' for <count> option is malformed or out of range\n", rc: 1},
		{name: "empty option", args: []string{"dominfo", "--domain="}, stdout: "\n", stderr: "error: Failed to get option 'domain': Option argument is empty\n", rc: 1},
		{name: "cd non-interactive", args: []string{"cd", "/"}, stdout: "\n", stderr: "error: cd: command valid only in interactive mode\n", rc: 1},
		{name: "pool type", args: []string{"pool-list", "--type", "dir,foo"}, stdout: "\n", stderr: "error: Invalid pool type 'foo'\n", rc: 1},

		// Grammar.
		{name: "quoting", args: []string{`echo 'a b' "c d" e\ f`}, stdout: "a b c d e f\n"},
		{name: "echo --shell", args: []string{`echo --shell 'x y' z`}, stdout: "'x y' z\n"},
		{name: "echo --xml", args: []string{`echo --xml '<a&b>'`}, stdout: "&lt;a&amp;b&gt;\n"},
		{name: "comment", args: []string{"echo hi # comment"}, stdout: "hi\n"},
		{name: "missing quote", args: []string{`echo a "b`}, stderr: "error: missing \"\n", rc: 1},
		{name: "dangling backslash", args: []string{`echo a\`}, stderr: "error: dangling \\\n", rc: 1},
		{name: "unterminated single quote", args: []string{`echo 'a`}, stdout: "a\n"},
		{name: "grammar error runs nothing", args: []string{"echo a; nosuch; echo b"}, stderr: "error: unknown command: 'nosuch'\n", rc: 1},
		{name: "chain rc from last ok", args: []string{"dominfo nosuch; list --name"}, stdout: "\ntest\n\n", stderr: "error: failed to get domain 'nosuch'\n"},
		{name: "chain rc from last fail", args: []string{"list --name; dominfo nosuch"}, stdout: "test\n\n\n", stderr: "error: failed to get domain 'nosuch'\n", rc: 1},
		{name: "quit stops", args: []string{"echo a; quit; echo b"}, stdout: "a\n"},

		// Global options.
		{name: "-q list", args: []string{"-q", "list", "--all"}, stdout: " 1   test   running\n"},
		{name: "-q autostart", args: []string{"-q", "autostart test"}},
		{name: "-r destroy", args: []string{"-r", "destroy", "test"}, stdout: "\n", stderr: "error: Failed to destroy domain 'test'\nerror: operation forbidden: read only access prevents virDomainDestroy\n", rc: 1},
		{name: "-t", args: []string{"-t", "list --name"}, stdout: "test\n\n(Time: T ms)\n\n"},
		{name: "-v", args: []string{"-v"}, stdout: "0.1.0\n"},
		{name: "bad escape", args: []string{"-e", "xx", "list"}, stderr: "error: Invalid string 'xx' for escape sequence\n", rc: 1},
		{name: "bad option", args: []string{"-x"}, stderr: "error: unsupported option '-x'. See --help.\n", rc: 1},
		{name: "-c without value", args: []string{"-c"}, stderr: "error: option '-c'/'--connect' requires an argument\n", rc: 1},
		{name: "bad uri", args: []string{"-c", "foo:///x", "list"}, stderr: "error: failed to connect to the hypervisor\nerror: no connection driver available for foo:///x\n", rc: 1},

		// Lifecycle (captures/lifecycle.txt and transient.txt).
		{name: "lifecycle", args: []string{"define vm1.xml; list --all; start vm1; list; suspend vm1; domstate vm1 --reason; resume vm1; shutdown vm1; domstate vm1 --reason; start vm1; destroy vm1; domstate vm1 --reason; undefine vm1; list --all"},
			stdout: "Domain 'vm1' defined from vm1.xml\n\n" +
				" Id   Name   State\n-----------------------\n 1    test   running\n -    vm1    shut off\n\n" +
				"Domain 'vm1' started\n\n" +
				" Id   Name   State\n----------------------\n 1    test   running\n 2    vm1    running\n\n" +
				"Domain 'vm1' suspended\n\npaused (user)\n\nDomain 'vm1' resumed\n\n" +
				"Domain 'vm1' is being shutdown\n\nshut off (shutdown)\n\n" +
				"Domain 'vm1' started\n\nDomain 'vm1' destroyed\n\nshut off (destroyed)\n\n" +
				"Domain 'vm1' has been undefined\n\n" +
				" Id   Name   State\n----------------------\n 1    test   running\n\n"},
		{name: "lifecycle errors", args: []string{"define vm1.xml; suspend vm1; resume vm1; start vm1; start vm1; destroy vm1; destroy vm1; shutdown vm1"},
			stdout: "Domain 'vm1' defined from vm1.xml\n\n\n\nDomain 'vm1' started\n\n\nDomain 'vm1' destroyed\n\n\n\n",
			stderr: "error: Failed to suspend domain 'vm1'\nerror: internal error: domain 'vm1' not running\n" +
				"error: Failed to resume domain 'vm1'\nerror: internal error: domain 'vm1' not paused\n" +
				"error: Domain is already active\n" +
				"error: Failed to destroy domain 'vm1'\nerror: Requested operation is not valid: domain is not running\n" +
				"error: Failed to shutdown domain 'vm1'\nerror: internal error: domain 'vm1' not running\n", rc: 1},
		{name: "transient", args: []string{"create tvm.xml; list --all"},
			stdout: "Domain 'tvm' created from tvm.xml\n\n Id   Name   State\n----------------------\n 1    test   running\n 2    tvm    running\n\n"},
		{name: "autostart", args: []string{"autostart test; domstate test; autostart --disable test"},
			stdout: "Domain 'test' marked as autostarted\n\nrunning\n\nDomain 'test' unmarked as autostarted\n\n"},
		{name: "desc", args: []string{"desc test; desc test --title; desc test --title Hello; list --title"},
			stdout: "No description for domain: test\nNo title for domain: test\nDomain title updated successfully\n Id   Name   State     Title\n------------------------------\n 1    test   running   Hello\n\n"},
		{name: "networks", args: []string{"net-define net1.xml; net-list --all; net-start net1; net-autostart net1; net-list; net-destroy net1; net-undefine net1; net-list --all"},
			stdout: "Network net1 defined from net1.xml\n\n" +
				" Name      State      Autostart   Persistent\n----------------------------------------------\n default   active     no          yes\n net1      inactive   no          yes\n\n" +
				"Network net1 started\n\nNetwork net1 marked as autostarted\n\n" +
				" Name      State    Autostart   Persistent\n--------------------------------------------\n default   active   no          yes\n net1      active   yes         yes\n\n" +
				"Network net1 destroyed\n\nNetwork net1 has been undefined\n\n" +
				" Name      State    Autostart   Persistent\n--------------------------------------------\n default   active   no          yes\n\n"},
		{name: "pools", args: []string{"pool-define pool1.xml; pool-list --all; pool-start pool1; pool-autostart pool1; pool-destroy pool1; pool-undefine pool1; pool-list --all"},
			stdout: "Pool pool1 defined from pool1.xml\n\n" +
				" Name           State      Autostart\n--------------------------------------\n default-pool   active     no\n pool1          inactive   no\n\n" +
				"Pool pool1 started\n\nPool pool1 marked as autostarted\n\nPool pool1 destroyed\n\nPool pool1 has been undefined\n\n" +
				" Name           State    Autostart\n------------------------------------\n default-pool   active   no\n\n"},
		{name: "volumes", args: []string{"vol-create default-pool vol1.xml; vol-create-as default-pool raw1.img 2G --allocation 2G; vol-info disk1.qcow2 --pool default-pool; vol-delete disk1.qcow2 --pool default-pool"},
			stdout: "Vol disk1.qcow2 created from vol1.xml\n\nVol raw1.img created\n\nName:           disk1.qcow2\nType:           file\nCapacity:       10.00 GiB\nAllocation:     0.00 B\n\nVol disk1.qcow2 deleted\n\n"},

		// edit (captures/edit.txt); without a terminal a failed edit
		// reports the error and fails instead of asking.
		{name: "edit unchanged", args: []string{"edit", "test"}, env: []string{"EDITOR=true"}, stdout: "Domain 'test' XML configuration not changed.\n\n"},
		{name: "edit changed", args: []string{"edit test; dumpxml --inactive test"}, env: []string{"VISUAL=sed -i s/2097152/1048576/", "EDITOR=false"},
			stdout: "Domain 'test' XML configuration edited.\n\n"},
		{name: "edit broken", args: []string{"edit", "test"}, env: []string{"EDITOR=sed -i 's/<name>/<nam>/'"}, stdout: "\n", rc: 1},
		{name: "console without tty", args: []string{"console", "test"}, stdout: "\n", stderr: "error: Cannot run interactive console without a controlling TTY\n", rc: 1},

		// Stdin script mode (virsh echoes each line after the prompt).
		{name: "stdin", stdin: "list --name\ndominfo nosuch\n",
			stdout: "Welcome to vsh, the virtualization interactive terminal.\n\nType:  'help' for help with commands\n       'quit' to quit\n\nvsh # list --name\ntest\n\nvsh # dominfo nosuch\n\nvsh # \n",
			stderr: "error: failed to get domain 'nosuch'\n"},
		{name: "stdin -q -r", args: []string{"-q", "-r"}, stdin: "uri\n", stdout: "vsh > uri\ntest:///default\nvsh > \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-c", "test:///default"}, tt.args...)
			if tt.name == "bad uri" || tt.name == "-c without value" {
				args = tt.args
			}
			got := run(t, append(testEnv(t), tt.env...), tt.stdin, vshBin, args...)
			if tt.name == "edit changed" {
				if !strings.Contains(got.stdout, "<currentMemory unit='KiB'>1048576</currentMemory>") {
					t.Errorf("edited definition not saved:\n%s", got.stdout)
				}
				got.stdout = got.stdout[:strings.Index(got.stdout, "\n\n")+2]
			}
			if tt.name == "edit broken" {
				if !strings.HasPrefix(got.stderr, "error: ") {
					t.Errorf("stderr = %q, want the define error", got.stderr)
				}
				got.stderr = ""
			}
			if out := normalize(got.stdout); out != normalize(tt.stdout) {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.stdout)
			}
			if got.stderr != tt.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", got.stderr, tt.stderr)
			}
			if got.rc != tt.rc {
				t.Errorf("exit code %d, want %d", got.rc, tt.rc)
			}
		})
	}
}

// TestJSON checks that --json prints valid, stable JSON.
func TestJSON(t *testing.T) {
	env := testEnv(t)
	for _, args := range [][]string{
		{"list", "--all", "--json"}, {"dominfo", "test", "--json"}, {"domstate", "test", "--json"},
		{"net-list", "--all", "--json"}, {"pool-list", "--all", "--json"}, {"vol-list", "default-pool", "--json"},
		{"nodeinfo", "--json"}, {"net-info", "default", "--json"}, {"pool-info", "default-pool", "--json"},
	} {
		got := run(t, env, "", vshBin, append([]string{"-c", "test:///default"}, args...)...)
		if got.rc != 0 {
			t.Errorf("%v: rc %d: %s", args, got.rc, got.stderr)
			continue
		}
		body := strings.TrimSuffix(got.stdout, "\n\n")
		if !json.Valid([]byte(body)) {
			t.Errorf("%v: invalid JSON %q", args, got.stdout)
		}
	}
	got := run(t, env, "", vshBin, "-c", "test:///default", "dominfo", "test", "--json")
	for _, key := range []string{`"name": "test"`, `"uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f"`, `"state": "running"`, `"id": 1`} {
		if !strings.Contains(got.stdout, key) {
			t.Errorf("dominfo --json lacks %s:\n%s", key, got.stdout)
		}
	}
}

// TestHelp checks help layouts against virsh's.
func TestHelp(t *testing.T) {
	env := testEnv(t)
	got := run(t, env, "", vshBin, "-c", "test:///default", "help", "dominfo")
	want := "  NAME\n    dominfo - domain information\n\n  SYNOPSIS\n    dominfo <domain> [--json]\n\n  DESCRIPTION\n    Returns basic information about the domain.\n\n  OPTIONS\n    [--domain] <string>  domain name, id or uuid\n    --json           print the result as JSON (see vsh's JSON.md)\n\n\n"
	if got.stdout != want {
		t.Errorf("help dominfo:\n%s\nwant:\n%s", got.stdout, want)
	}
	if alt := run(t, env, "", vshBin, "-c", "test:///default", "dominfo", "--help"); alt.stdout != want {
		t.Errorf("dominfo --help:\n%s\nwant:\n%s", alt.stdout, want)
	}
	got = run(t, env, "", vshBin, "-c", "test:///default", "help", "network")
	if !strings.HasPrefix(got.stdout, " Networking (help keyword 'network'):\n    net-autostart                  autostart a network\n") || !strings.HasSuffix(got.stdout, "convert a network name to network UUID\n\n") {
		t.Errorf("help network:\n%s", got.stdout)
	}
}

// TestVirshDiff runs the same scripts through virsh and vsh on
// test:///default and compares everything but program names, versions,
// generated UUIDs and timings.
func TestVirshDiff(t *testing.T) {
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		t.Skip("virsh not installed: apt-get install libvirt-clients")
	}
	scripts := []string{
		"list --all", "list --name", "list --uuid", "list --all --title", "dominfo test", "dominfo 1",
		"domstate test --reason", "domid test", "domname 1", "domuuid test",
		"net-list --all", "net-info default", "net-uuid default", "pool-list --all --details",
		"pool-info default-pool", "vol-list default-pool --details", "nodeinfo", "hostname", "uri",
		"capabilities", "vcpucount test", "domiflist test", "domiflist --inactive test", "help", "help domain", "help network", "help pool", "help volume",
		"help host", "help monitor", "help start", "help undefine", "help vol-create-as",
		"help vol-resize", "help desc", "help pool-define-as", "help echo", "help edit", "help exit",
		"dominfo nosuch", "net-info nosuch", "pool-info nosuch", "vol-info x", "start test",
		"nosuch", "domi", "start", "dominfo --bogus", "list --all extra", "dominfo --domain",
		"echo 'a b' \"c d\" e\\ f", "echo --shell a\\'b \"\"", "echo \"x", "echo x\\",
		"dominfo nosuch; list", "list; dominfo nosuch", "echo a; nosuch; echo b",
		"define vm1.xml; list --all; dominfo vm1; start vm1; list; suspend vm1; domstate vm1 --reason; resume vm1; destroy vm1; undefine vm1; list --all",
		"define vm1.xml; define vm1.xml", "define /nonexistent.xml", "undefine nosuch",
		"create tvm.xml; list --all; dominfo tvm; destroy tvm; list --all",
		"suspend test; list; resume test; reboot test; reset test; shutdown test; domstate test --reason",
		"desc test; desc test --title; desc test --title T; desc test --title; list --title",
		"setmem test 1G; dominfo test; setmem test 1.5G; setmem test abc; setvcpus test x",
		"net-define net1.xml; net-list --all; net-start net1; net-autostart net1; net-list; net-info net1; net-destroy net1; net-undefine net1",
		"pool-define pool1.xml; pool-list --all; pool-start pool1; pool-autostart pool1; pool-list --all --details; pool-info pool1; pool-destroy pool1; pool-undefine pool1",
		"pool-define-as p2 dir --target /var/tmp/p2; pool-build p2; pool-start p2; vol-create-as p2 v1 1M; vol-list p2; vol-info v1 --pool p2; vol-path v1 --pool p2; vol-delete v1 --pool p2; pool-destroy p2; pool-undefine p2",
		"pool-define-as --print-xml p3 dir --target /x", "vol-create-as default-pool y 1M --print-xml",
		"shutdown test --mode bogus", "pool-list --type dir,foo",
	}
	env := testEnv(t)
	norm := func(s string) string {
		s = normalize(s)
		return strings.NewReplacer("virsh", "vsh", "Virsh itself", "Vsh itself").Replace(s)
	}
	for _, script := range scripts {
		for _, flags := range [][]string{nil, {"-q"}, {"-r"}} {
			args := append(append([]string{}, flags...), "-c", "test:///default", script)
			a := run(t, env, "", virsh, args...)
			b := run(t, env, "", vshBin, args...)
			if strings.HasPrefix(script, "help") {
				a.stdout, b.stdout = commonCommands(a.stdout, b.stdout)
			}
			if d := lineDiff(norm(a.stdout), norm(b.stdout)); d != "" {
				t.Errorf("%q: stdout differs (- virsh, + vsh):\n%s", args, d)
			}
			if d := lineDiff(norm(a.stderr), norm(b.stderr)); d != "" {
				t.Errorf("%q: stderr differs (- virsh, + vsh):\n%s", args, d)
			}
			if a.rc != b.rc {
				t.Errorf("%q: exit code virsh %d, vsh %d", args, a.rc, b.rc)
			}
		}
	}
	// The same through stdin (virsh's non-tty interactive mode).
	for _, stdin := range []string{
		"list --all\ndominfo nosuch\nquit\necho not run\n",
		"echo a \\\nb\necho \"x\ny\"\n",
		"define vm1.xml\nstart vm1\nlist\nundefine vm1\ndestroy vm1\nlist --all",
		"cd /\npwd\n",
	} {
		for _, flags := range [][]string{nil, {"-q"}, {"-r"}} {
			args := append(append([]string{}, flags...), "-c", "test:///default")
			a := run(t, env, stdin, virsh, args...)
			b := run(t, env, stdin, vshBin, args...)
			if d := lineDiff(norm(a.stdout), norm(b.stdout)); d != "" {
				t.Errorf("stdin %q %q: stdout differs (- virsh, + vsh):\n%s", stdin, flags, d)
			}
			if d := lineDiff(norm(a.stderr), norm(b.stderr)); d != "" {
				t.Errorf("stdin %q %q: stderr differs (- virsh, + vsh):\n%s", stdin, flags, d)
			}
			if a.rc != b.rc {
				t.Errorf("stdin %q %q: exit code virsh %d, vsh %d", stdin, flags, a.rc, b.rc)
			}
		}
	}
}

var helpLineRE = regexp.MustCompile(`^    ([a-z-]+) +\S`)

// commonCommands drops the command lines of help listings that name a
// command only one of the two programs has (vsh implements a subset of
// virsh's commands and adds validate).
func commonCommands(virshOut, vshOut string) (string, string) {
	names := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			if sm := helpLineRE.FindStringSubmatch(l); sm != nil {
				m[sm[1]] = true
			}
		}
		return m
	}
	va, vb := names(virshOut), names(vshOut)
	filter := func(s string, other map[string]bool) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if sm := helpLineRE.FindStringSubmatch(l); sm != nil && !other[sm[1]] {
				continue
			}
			keep = append(keep, l)
		}
		// Drop the headers of groups left empty.
		var out []string
		for i, l := range keep {
			if strings.HasPrefix(l, " ") && strings.HasSuffix(l, "):") && (i+1 == len(keep) || keep[i+1] == "") {
				continue
			}
			if l == "" && len(out) > 0 && out[len(out)-1] == "" {
				continue
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	return filter(virshOut, vb), filter(vshOut, va)
}

// lineDiff returns the lines that differ between a and b ("" if none),
// aligned by a longest common subsequence.
func lineDiff(a, b string) string {
	if a == b {
		return ""
	}
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i++
			j++
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+%q\n", y[j])
			j++
		default:
			fmt.Fprintf(&out, "-%q\n", x[i])
			i++
		}
	}
	return out.String()
}

// ptySession is vsh running under a pseudo-terminal.
type ptySession struct {
	t      *testing.T
	ptmx   *os.File
	cmd    *exec.Cmd
	out    bytes.Buffer
	chunks chan []byte
}

// startPTY starts vsh with args on a new pseudo-terminal as its
// controlling terminal.
func startPTY(t *testing.T, env []string, args ...string) *ptySession {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pts: %v", err)
	}
	defer tty.Close()
	unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 120})
	cmd := exec.Command(vshBin, args...)
	cmd.Dir = "testdata"
	cmd.Env = append(env, "TERM=dumb")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	p := &ptySession{t: t, ptmx: ptmx, cmd: cmd, chunks: make(chan []byte, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				p.chunks <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(p.chunks)
				return
			}
		}
	}()
	return p
}

// expect waits for text to appear in the output; the deadline only
// guards against a hung child and is far above any normal run.
func (p *ptySession) expect(s string) {
	p.t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		select {
		case c, ok := <-p.chunks:
			if !ok {
				p.t.Fatalf("vsh exited before %q; output:\n%s", s, p.out.String())
			}
			p.out.Write(c)
		case <-deadline:
			p.t.Fatalf("no %q in output:\n%s", s, p.out.String())
		}
	}
}

// waitRaw waits until vsh has put the terminal in raw mode (readline,
// the Try again question), so that keys are not taken by the line
// discipline.
func (p *ptySession) waitRaw() {
	p.t.Helper()
	for i := 0; i < 3000; i++ {
		tio, err := unix.IoctlGetTermios(int(p.ptmx.Fd()), unix.TCGETS)
		if err != nil {
			p.t.Fatalf("tcgetattr: %v", err)
		}
		if tio.Lflag&unix.ICANON == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("terminal never left canonical mode; output:\n%s", p.out.String())
}

// wait waits for vsh to exit; the guard kills a hung child.
func (p *ptySession) wait() error {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		p.t.Fatalf("vsh did not exit; output:\n%s", p.out.String())
		return nil
	}
}

func (p *ptySession) send(s string) {
	p.waitRaw()
	if _, err := p.ptmx.WriteString(s); err != nil {
		p.t.Fatal(err)
	}
}

func envValue(env []string, key string) string {
	v := ""
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			v = strings.TrimPrefix(e, key+"=")
		}
	}
	return v
}

// TestInteractive drives vsh under a pseudo-terminal: banner and prompt,
// Tab completion of a command name and a domain name, running it, the
// history file, quit.
func TestInteractive(t *testing.T) {
	env := testEnv(t)
	p := startPTY(t, env, "-c", "test:///default")
	p.expect("Welcome to vsh, the virtualization interactive terminal.")
	p.expect("vsh # ")
	p.send("domst\t")
	p.expect("domstate ")
	p.send("te\t")
	p.expect("domstate test ")
	p.send("\r")
	p.expect("running")
	p.out.Reset()
	p.send("quit\r")
	if err := p.wait(); err != nil {
		t.Errorf("vsh exited with %v", err)
	}
	hist, err := os.ReadFile(filepath.Join(envValue(env, "XDG_CACHE_HOME"), "vsh", "history"))
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	if !strings.Contains(string(hist), "domstate test") || !strings.Contains(string(hist), "quit") {
		t.Errorf("history file = %q", hist)
	}
}

// TestReadOnlyPrompt checks the read-only prompt and that Ctrl-D exits 0
// even after a failed command.
func TestReadOnlyPrompt(t *testing.T) {
	p := startPTY(t, testEnv(t), "-q", "-r", "-c", "test:///default")
	p.expect("vsh > ")
	p.send("destroy test\r")
	p.expect("read only access prevents virDomainDestroy")
	p.expect("vsh > ")
	p.send("\x04")
	if err := p.wait(); err != nil {
		t.Errorf("vsh exited with %v, want 0", err)
	}
	if strings.Contains(p.out.String(), "Welcome") {
		t.Errorf("-q printed the banner:\n%s", p.out.String())
	}
}

// TestEditTryAgain breaks the XML in the editor and answers virsh's
// "Try again?" question: '?' prints the choices, 'y' reopens the editor
// (which breaks it again), 'n' gives up.
func TestEditTryAgain(t *testing.T) {
	env := append(testEnv(t), "EDITOR=sed -i 's/<name>/<nam>/'")
	p := startPTY(t, env, "-c", "test:///default", "edit test")
	p.expect("Failed. Try again? [y,n,i,f,?]: ")
	p.send("?")
	p.expect("y - yes, start editor again\r\nn - no, throw away my changes\r\ni - turn off validation and try to redefine again\r\nf - force, try to redefine again\r\n? - print this help\r\n")
	p.expect("Failed. Try again? [y,n,i,f,?]: ")
	p.out.Reset()
	p.send("y")
	p.expect("Failed. Try again? [y,n,i,f,?]: ")
	p.send("n")
	err := p.wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("vsh exited with %v, want exit status 1", err)
	}
}

// benchHome defines n domains in a fresh vsh:///session state directory
// and returns the environment that uses it.
func benchHome(b *testing.B, n int) []string {
	b.Helper()
	home := b.TempDir()
	env := append(os.Environ(), "VSH_HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"VSH_DEFAULT_URI=vsh:///session")
	var script strings.Builder
	for i := range n {
		file := filepath.Join(home, fmt.Sprintf("vm%d.xml", i))
		xml := fmt.Sprintf("<domain type='kvm'><name>vm%d</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>\n", i)
		if err := os.WriteFile(file, []byte(xml), 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&script, "define %s\n", file)
	}
	cmd := exec.Command(vshBin, "-q")
	cmd.Env = env
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil || bytes.Contains(out, []byte("error:")) {
		b.Fatalf("defining %d domains: %v\n%s", n, err, out)
	}
	return env
}

// BenchmarkListAll times the whole command `vsh list --all` with 1000
// defined domains (issue 3's goal: under 50 ms).
func BenchmarkListAll(b *testing.B) {
	env := benchHome(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		cmd := exec.Command(vshBin, "-q", "list", "--all")
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil || bytes.Count(out, []byte("\n")) != 1000 {
			b.Fatalf("list --all: %v, %d lines", err, bytes.Count(out, []byte("\n")))
		}
	}
}

// BenchmarkDominfo times the whole command `vsh dominfo` with 1000
// defined domains.
func BenchmarkDominfo(b *testing.B) {
	env := benchHome(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		cmd := exec.Command(vshBin, "dominfo", "vm500")
		cmd.Env = env
		if out, err := cmd.Output(); err != nil || !bytes.Contains(out, []byte("Name:           vm500")) {
			b.Fatalf("dominfo: %v\n%s", err, out)
		}
	}
}
