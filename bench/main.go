// Command bench measures vsh against its peers on this machine and prints
// a Markdown table: figure, vsh, peer, ratio and the conditions.
//
//	go run ./bench [--runs N] [--linux] [--only NAME[,NAME]] [--out FILE] [--go]
//
// Each figure is the median of --runs runs with their minimum and maximum.
// The ratio is how many times better vsh is (peer/vsh for times and sizes,
// vsh/peer for throughputs), so above 1 means vsh is ahead. Peers that are
// not installed get their install hint in the peer column; nothing here
// fails because a peer is missing, and no figure is asserted anywhere.
//
// Figures (--only names): start (vsh start to first console byte and to
// the payload's ready marker, vs QEMU microvm), rss (VMM memory beyond
// guest memory, vs QEMU), linux (--linux only: the guest kit's kernel to
// VSH-GUEST-READY), control (define/dumpxml/undefine of 1000 domains and
// list --all, vs virsh's test driver), validate (vsh validate vs xmllint
// --relaxng), disk (the storage layer vs the host file and qemu-img
// bench) and tcp (--linux only: TCP throughput between the guest kit and
// the host both ways over virtio-net, vs QEMU TCG with the same tap setup,
// in a private network namespace). --go runs the repository's Go benchmarks instead and writes
// benchstat-friendly output.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// figure is one group of rows.
type figure struct {
	name  string
	linux bool // only with --linux
	run   func(e *env) []Row
}

var figures = []figure{
	{name: "start", run: figureStart},
	{name: "rss", run: figureRSS},
	{name: "linux", linux: true, run: figureLinux},
	{name: "control", run: figureControl},
	{name: "validate", run: figureValidate},
	{name: "disk", run: figureDisk},
	{name: "tcp", linux: true, run: figureTCP},
}

// env is what every figure shares.
type env struct {
	runs  int
	root  string // module root
	tmp   string // scratch directory, removed at the end
	vsh   string // freshly built vsh binary
	log   func(format string, args ...any)
	notes notes // conditions shared by several rows
}

func main() {
	runs := flag.Int("runs", 5, "runs per figure (median, min and max are reported)")
	linux := flag.Bool("linux", false, "add the figures that boot the guest kit's Linux (minutes each on nested KVM): 3, its ready marker, and 7, TCP throughput both ways")
	only := flag.String("only", "", "comma-separated figures to run: "+figureNames())
	out := flag.String("out", "", "also write the Markdown to this file")
	goBench := flag.Bool("go", false, "run the repository's Go benchmarks (go test -bench) instead and write their output to --go-out")
	goOut := flag.String("go-out", "bench-go.txt", "file for --go output (benchstat-friendly)")
	goCount := flag.Int("go-count", 5, "go test -count for --go")
	flag.Parse()
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "bench: --runs must be at least 1")
		os.Exit(2)
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}
	if *goBench {
		if err := runGoBenchmarks(root, *goOut, *goCount, logf); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	selected := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			if !isFigure(n) {
				fmt.Fprintf(os.Stderr, "bench: unknown figure %q (%s)\n", n, figureNames())
				os.Exit(2)
			}
			selected[n] = true
		}
	}
	tmp, err := os.MkdirTemp("/var/tmp", "vsh-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(tmp)
	onInterrupt(func() { os.RemoveAll(tmp) })
	handleInterrupts()
	e := &env{runs: *runs, root: root, tmp: tmp, log: logf}
	e.vsh = filepath.Join(tmp, "vsh")
	logf("building vsh into %s", e.vsh)
	build := exec.Command("go", "build", "-o", e.vsh, "./cmd/vsh")
	build.Dir = root
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: cannot build vsh:", err)
		os.Exit(1)
	}
	started := time.Now()
	var rows []Row
	for _, f := range figures {
		if len(selected) > 0 && !selected[f.name] {
			continue
		}
		if f.linux && !*linux && !selected[f.name] {
			continue
		}
		logf("figure %s", f.name)
		rows = append(rows, f.run(e)...)
	}
	md := report(conditions(root, *linux), rows, &e.notes, *runs, time.Since(started))
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

func figureNames() string {
	var n []string
	for _, f := range figures {
		n = append(n, f.name)
	}
	return strings.Join(n, ", ")
}

func isFigure(name string) bool {
	for _, f := range figures {
		if f.name == name {
			return true
		}
	}
	return false
}

// report renders the conditions, the table and how to read it.
func report(cond []string, rows []Row, n *notes, runs int, took time.Duration) string {
	var b strings.Builder
	b.WriteString("Conditions:\n\n")
	for _, c := range cond {
		fmt.Fprintf(&b, "- %s\n", c)
	}
	fmt.Fprintf(&b, "- %d runs per figure; values are median (min–max); suite took %s\n\n", runs, took.Round(time.Second))
	b.WriteString(markdownTable(rows))
	if len(n.texts) > 0 {
		b.WriteString("\nNotes:\n\n" + n.markdown())
	}
	b.WriteString("\nratio: how many times better vsh is (peer/vsh for times and sizes, vsh/peer for throughputs); above 1 means vsh is ahead. Absolute times on a shared machine are noise; compare ratios.\n")
	return b.String()
}

// moduleRoot finds the directory of vsh's go.mod from the working
// directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(data), "module vsh") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the vsh module (no go.mod with 'module vsh' above the working directory)")
		}
		dir = parent
	}
}

// conditions describes the machine: CPU, KVM kind, host kernel, Go.
func conditions(root string, linux bool) []string {
	var c []string
	c = append(c, "CPU: "+cpuModel()+fmt.Sprintf(" (%d logical CPUs)", runtime.NumCPU()))
	c = append(c, "/dev/kvm: "+kvmKind())
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		c = append(c, "host kernel: Linux "+strings.TrimSpace(string(data)))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		c = append(c, "load average at the end: "+strings.Join(strings.Fields(string(data))[:3], " "))
	}
	c = append(c, "Go: "+runtime.Version()+", vsh built from "+gitDescribe(root))
	if linux {
		c = append(c, "figure 3 guest: "+guestKitDir+"/vmlinux + initramfs.cpio.gz (guest/build.sh)")
	}
	return c
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kvmKind says whether /dev/kvm is hardware virtualization or nested PVM.
func kvmKind() string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "absent"
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "nested PVM (software; guest ring 0 emulated, /sys/module/kvm_pvm present)"
	}
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			return "hardware (" + m + ")"
		}
	}
	return "present (kind unknown)"
}

func gitDescribe(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "an unknown commit"
	}
	return "commit " + strings.TrimSpace(string(out))
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// onInterrupt registers f to run if the suite is interrupted (SIGINT,
// SIGTERM), so that no VM, QEMU process or temporary directory outlives
// it. f must be safe to call when its object is already gone.
func onInterrupt(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

// handleInterrupts runs the registered clean-ups, newest first, on SIGINT
// or SIGTERM and exits.
func handleInterrupts() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "bench: %v: cleaning up\n", sig)
		cleanupMu.Lock()
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		os.Exit(130)
	}()
}

// installHint is the text for a peer that is not installed.
func installHint(tool, pkg string) string {
	return fmt.Sprintf("%s not installed: apt-get install %s", tool, pkg)
}

// durationMs converts to milliseconds.
func durationMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
