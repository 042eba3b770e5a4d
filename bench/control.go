package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// controlDomains is how many domains figure 4 defines.
const controlDomains = 1000

// listRepeats is how many `list --all` commands follow the definitions;
// each one's time comes from the shell's own --timing output.
const listRepeats = 20

// controlDomainXML is a small but typical direct-kernel domain.
func controlDomainXML(name string) string {
	return `<domain type='kvm'>
  <name>` + name + `</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>/var/cache/vsh/guest/vmlinux</kernel>
    <initrd>/var/cache/vsh/guest/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 reboot=k panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/vsh/images/` + name + `.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
`
}

// controlNote says how the two shells keep their state.
const controlNote = "vsh runs as `vsh -q -c vsh:///session` with VSH_HOME in a fresh temporary directory: every definition is parsed, validated and written (fsynced) to disk. The peer is `virsh -q -c test:///default`, whose test driver keeps all state in memory and writes nothing. Both read the same script on stdin, one command a line."

// shellTool is a virsh-like shell run with a script on stdin.
type shellTool struct {
	path string
	args []string // connection arguments
	env  []string
}

// run feeds script to the shell and returns its wall time and output.
func (s shellTool) run(script string, extra ...string) (time.Duration, []byte, error) {
	cmd := exec.Command(s.path, append(append([]string{}, extra...), s.args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdin = strings.NewReader(script)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err == nil && stderr.Len() > 0 {
		err = fmt.Errorf("%s wrote errors: %s", filepath.Base(s.path), firstLine(stderr.String()))
	}
	if err != nil {
		return d, out.Bytes(), fmt.Errorf("%s: %w (%s)", filepath.Base(s.path), err, firstLine(stderr.String()))
	}
	return d, out.Bytes(), nil
}

var timingRE = regexp.MustCompile(`\(Time: ([0-9.]+) ms\)`)

// commandTimes returns the per-command times a shell printed with -t.
func commandTimes(out []byte) []float64 {
	var t []float64
	for _, m := range timingRE.FindAllSubmatch(out, -1) {
		if v, err := strconv.ParseFloat(string(m[1]), 64); err == nil {
			t = append(t, v)
		}
	}
	return t
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// figureControl is figure 4: define + dumpxml + undefine of 1000 domains
// from one script, and list --all with 1000 domains defined.
func figureControl(e *env) []Row {
	dir := filepath.Join(e.tmp, "control")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failedRows(err, "control plane")
	}
	var cycle, defineOnly strings.Builder
	for i := 0; i < controlDomains; i++ {
		name := fmt.Sprintf("bench%04d", i)
		file := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(file, []byte(controlDomainXML(name)), 0o644); err != nil {
			return failedRows(err, "control plane")
		}
		fmt.Fprintf(&cycle, "define %s\ndumpxml %s\nundefine %s\n", file, name, name)
		fmt.Fprintf(&defineOnly, "define %s\n", file)
	}
	listScript := defineOnly.String() + strings.Repeat("list --all\n", listRepeats)

	vshTool := func() (shellTool, func()) {
		home, err := os.MkdirTemp(e.tmp, "home-")
		if err != nil {
			return shellTool{}, func() {}
		}
		return shellTool{path: e.vsh, args: []string{"-q", "-c", "vsh:///session"}, env: []string{"VSH_HOME=" + home}},
			func() { os.RemoveAll(home) }
	}
	virshPath, virshErr := exec.LookPath("virsh")
	virshTool := shellTool{path: virshPath, args: []string{"-q", "-c", "test:///default"}}

	cycleRow := Row{
		Figure:      fmt.Sprintf("4a. define + dumpxml + undefine of %d domains, one script on stdin", controlDomains),
		Unit:        "s",
		LowerBetter: true,
		PeerName:    "virsh -c test:///default",
		Conditions:  "wall time of the whole shell process " + e.notes.ref(controlNote),
	}
	listRow := Row{
		Figure:      fmt.Sprintf("4b. list --all with %d domains defined", controlDomains),
		Unit:        "ms",
		LowerBetter: true,
		PeerName:    "virsh -c test:///default",
		Conditions:  fmt.Sprintf("per command, from each shell's own -t timing: median of %d list commands after %d defines in the same session ", listRepeats, controlDomains) + e.notes.ref(controlNote),
	}

	for i := 0; i < e.runs; i++ {
		t, home := vshTool()
		d, _, err := t.run(cycle.String())
		home()
		cycleRow.VSH = addSample(cycleRow.VSH, d.Seconds(), err)
		t, home = vshTool()
		_, out, err := t.run(listScript, "-t")
		home()
		listRow.VSH = addListSample(listRow.VSH, out, err)
		if virshErr != nil {
			continue
		}
		d, _, err = virshTool.run(cycle.String())
		cycleRow.Peer = addSample(cycleRow.Peer, d.Seconds(), err)
		_, out, err = virshTool.run(listScript, "-t")
		listRow.Peer = addListSample(listRow.Peer, out, err)
	}
	if virshErr != nil {
		cycleRow.Peer = Result{Missing: installHint("virsh", "libvirt-clients")}
		listRow.Peer = cycleRow.Peer
	}
	return []Row{cycleRow, listRow}
}

// addListSample takes the median of the trailing list --all timings of
// one run as that run's sample.
func addListSample(r Result, out []byte, err error) Result {
	if err != nil {
		return addSample(r, 0, err)
	}
	t := commandTimes(out)
	if len(t) != controlDomains+listRepeats {
		return addSample(r, 0, fmt.Errorf("expected %d timings from -t, got %d", controlDomains+listRepeats, len(t)))
	}
	s, _ := summarize(t[controlDomains:])
	return addSample(r, s.Median, nil)
}

// addSample appends a sample, or records the first failure: a figure with
// a failed run reports the failure rather than a partial median.
func addSample(r Result, v float64, err error) Result {
	if r.Missing != "" {
		return r
	}
	if err != nil {
		return Result{Missing: "failed: " + err.Error()}
	}
	r.Samples = append(r.Samples, v)
	return r
}

// failedRows is a single row reporting that a figure could not be set up.
func failedRows(err error, figure string) []Row {
	return []Row{{Figure: figure, VSH: Result{Missing: "setup failed: " + err.Error()}, Peer: Result{Missing: "not run"}}}
}
