package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// benchmarkPackages lists the module's packages (as ./dir patterns) with
// at least one func BenchmarkXxx in a _test.go file.
func benchmarkPackages(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		has, err := hasBenchmark(path)
		if err != nil || !has {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		seen["./"+filepath.ToSlash(rel)] = true
		return nil
	})
	var pkgs []string
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs, err
}

func hasBenchmark(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "func Benchmark") {
			return true, nil
		}
	}
	return false, s.Err()
}

// runGoBenchmarks runs `go test -run '^$' -bench . -benchmem -count N`
// over every package with benchmarks, one package at a time so that one
// that does not compile (the tree is shared) does not hide the others.
// The raw output, which benchstat reads, goes to out; a summary of which
// packages ran goes to the log.
func runGoBenchmarks(root, out string, count int, logf func(string, ...any)) error {
	pkgs, err := benchmarkPackages(root)
	if err != nil {
		return fmt.Errorf("find benchmarks: %w", err)
	}
	if len(pkgs) == 0 {
		return fmt.Errorf("no benchmarks under %s", root)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	var failed []string
	for _, p := range pkgs {
		logf("go test -bench %s", p)
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-count", fmt.Sprint(count), p)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stdout = io.MultiWriter(f, os.Stderr)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v: %s)", p, err, firstLine(stderr.String())))
		}
	}
	logf("Go benchmarks written to %s; compare runs with: go run golang.org/x/perf/cmd/benchstat@latest old.txt %s", out, out)
	if len(failed) > 0 {
		return fmt.Errorf("benchmarks failed in %d of %d packages: %s", len(failed), len(pkgs), strings.Join(failed, "; "))
	}
	return nil
}
