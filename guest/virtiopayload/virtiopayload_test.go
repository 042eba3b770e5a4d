package virtiopayload

import (
	"errors"
	"os"
	"testing"

	"vsh/hypervisor/boot"
)

func TestBuildIsBootableELF(t *testing.T) {
	path, err := Build(t.TempDir())
	if errors.Is(err, ErrNoCompiler) {
		t.Skipf("cannot build: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := boot.ParseELF(data)
	if err != nil {
		t.Fatalf("the engine's ELF loader refuses the payload: %v", err)
	}
	if k.Entry != 0x100000 || len(k.Segments) != 1 || k.Segments[0].Paddr != 0x100000 {
		t.Errorf("entry %#x, %d segments (first at %#x); want one segment at 1 MiB entered at its start",
			k.Entry, len(k.Segments), k.Segments[0].Paddr)
	}
	// Page tables, rings, stacks and buffers fit well below 2 MiB.
	if m := k.Segments[0].Memsz; m > 1<<20 {
		t.Errorf("segment is %d bytes in memory", m)
	}
}

func TestParseBench(t *testing.T) {
	for _, tc := range []struct {
		name, console string
		wantErr       bool
		phases        int
		khz           uint64
	}{
		{"ok", "VP-START\r\nVP-TSC khz=2000000 qd=4\r\nVP-BENCH seq-write ops=2 bytes=8192 cycles=2000\r\nVP-BENCH seq-read ops=2 bytes=8192 cycles=1000\r\nVP-OK bench\r\nVP-END pass\r\n", false, 2, 2000000},
		{"failed", "VP-BENCH seq-write ops=2 bytes=8192 cycles=2000\r\nVP-FAIL bench request status 1\r\n", true, 0, 0},
		{"none", "VP-START\r\nVP-END pass\r\n", true, 0, 0},
		{"malformed", "VP-BENCH seq-write ops=x bytes=8192 cycles=2000\r\n", true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseBench(tc.console)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(r.Phases) != tc.phases || r.TSCKHz != tc.khz || r.Depth != 4 {
				t.Errorf("got %+v", r)
			}
			// 8192 bytes in 2000 cycles at 2 GHz = 1 us: 8192 MB/s.
			if got := r.Phases[0].MBPerSec(r.TSCKHz); got < 8191 || got > 8193 {
				t.Errorf("MB/s %v, want 8192", got)
			}
		})
	}
}

func TestPatternAndFNV(t *testing.T) {
	if FNV1a(nil) != 2166136261 || FNV1a([]byte("a")) != 0xe40c292c {
		t.Errorf("FNV-1a of \"\" / \"a\": %#x / %#x", FNV1a(nil), FNV1a([]byte("a")))
	}
	// The pattern differs between neighbouring sectors and offsets, so a
	// misplaced write shows.
	if Pattern(0, 0) == Pattern(1, 0) || Pattern(0, 0) == Pattern(0, 1) {
		t.Error("pattern does not tell sectors or offsets apart")
	}
}

func TestCmdline(t *testing.T) {
	if got := Cmdline(ModeTest, 9, 9); got != "vp=rw" {
		t.Errorf("test cmdline %q", got)
	}
	if got := Cmdline(ModeBench, 512, 8); got != "vp=bench vpops=512 vpqd=8" {
		t.Errorf("bench cmdline %q", got)
	}
}

func FuzzParseBench(f *testing.F) {
	f.Add("VP-TSC khz=2000000 qd=4\r\nVP-BENCH seq-write ops=2 bytes=8192 cycles=2000 min-batch-cycles=900\r\n")
	f.Add("VP-BENCH\r\nVP-FAIL x\r\n")
	f.Add("VP-BENCH a ops=1 bytes=99999999999999999999 cycles=0\n")
	f.Fuzz(func(t *testing.T, console string) {
		r, err := ParseBench(console)
		if err != nil {
			return
		}
		if len(r.Phases) == 0 {
			t.Fatal("no error but no phases")
		}
		for _, p := range r.Phases {
			if v := p.MBPerSec(r.TSCKHz); v < 0 {
				t.Fatalf("negative throughput %v", v)
			}
		}
	})
}
