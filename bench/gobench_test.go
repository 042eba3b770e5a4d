package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestBenchmarkPackages(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"a/a_test.go":            "package a\n\nfunc BenchmarkX(b *testing.B) {}\n",
		"b/b_test.go":            "package b\n\nfunc TestX(t *testing.T) {}\n",
		"c/d/d_test.go":          "package d\n\nfunc BenchmarkY(b *testing.B) {}\n",
		"c/d/testdata/x_test.go": "func BenchmarkZ(b *testing.B) {}\n",
		"e/e.go":                 "package e\n\nfunc BenchmarkNotATest() {}\n",
	}
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := benchmarkPackages(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"./a", "./c/d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("benchmarkPackages = %v, want %v", got, want)
	}
}
