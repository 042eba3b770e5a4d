package virtiopayload

import (
	"bytes"
	"errors"
	"net"
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

func TestFrames(t *testing.T) {
	guest := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	host := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	frame := func(dst, src net.HardwareAddr, typ uint16, body string) []byte {
		f := append(append(append([]byte{}, dst...), src...), byte(typ>>8), byte(typ))
		return append(f, body...)
	}
	for _, tc := range []struct {
		name      string
		frame     []byte
		hello     bool
		seq       uint64
		echo      bool
		echoFNV   uint32
		echoData  string
		echoSrc   net.HardwareAddr
		echoDstTo net.HardwareAddr
	}{
		{name: "hello", frame: frame(bcast, guest, EtherType, "VP-HELLO 0000001a\x00\x00"), hello: true, seq: 26},
		{name: "hello-short", frame: frame(bcast, guest, EtherType, "VP-HELLO 0001")},
		{name: "hello-not-hex", frame: frame(bcast, guest, EtherType, "VP-HELLO 0000zz1a")},
		{name: "hello-wrong-type", frame: frame(bcast, guest, 0x86dd, "VP-HELLO 0000001a")},
		{name: "echo", frame: frame(host, guest, EtherType, "VP-ECHO deadbeef Dxyz"), echo: true, echoFNV: 0xdeadbeef, echoData: "Dxyz", echoSrc: guest, echoDstTo: host},
		{name: "echo-empty", frame: frame(host, guest, EtherType, "VP-ECHO 00000001 "), echo: true, echoFNV: 1, echoSrc: guest, echoDstTo: host},
		{name: "echo-no-space", frame: frame(host, guest, EtherType, "VP-ECHO 00000001D")},
		{name: "runt", frame: []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, seq, ok := ParseHello(tc.frame)
			if ok != tc.hello || (ok && (seq != tc.seq || !bytes.Equal(src, guest))) {
				t.Errorf("ParseHello = %v, %d, %v; want hello %v seq %d", src, seq, ok, tc.hello, tc.seq)
			}
			e, ok := ParseEcho(tc.frame)
			if ok != tc.echo {
				t.Fatalf("ParseEcho ok = %v, want %v", ok, tc.echo)
			}
			if ok && (e.FNV != tc.echoFNV || string(e.Data) != tc.echoData || !bytes.Equal(e.Src, tc.echoSrc) || !bytes.Equal(e.Dst, tc.echoDstTo)) {
				t.Errorf("ParseEcho = %+v", e)
			}
		})
	}
	d := DataFrame(guest, host, []byte("abc"))
	if !bytes.Equal(d, frame(guest, host, EtherType, "Dabc")) {
		t.Errorf("DataFrame = % x", d)
	}
	q := QuitFrame(guest, host)
	if len(q) != 60 || q[14] != 'Q' || !bytes.Equal(q[:6], guest) {
		t.Errorf("QuitFrame = % x", q)
	}
}

// FuzzFrames feeds arbitrary frames to the parsers the host runs on what
// a guest sends: they must not panic, and what they accept must be a
// well-formed frame of EtherType.
func FuzzFrames(f *testing.F) {
	f.Add([]byte("\xff\xff\xff\xff\xff\xffRT\x00\x124V\x88\xb5VP-HELLO 00000001"))
	f.Add([]byte("\x02\x00\x00\x00\x00\x01RT\x00\x124V\x88\xb5VP-ECHO 0badf00d Dhello"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if _, _, ok := ParseHello(frame); ok && (len(frame) < 14+17 || frame[12] != 0x88 || frame[13] != 0xb5) {
			t.Fatalf("ParseHello accepted % x", frame)
		}
		if e, ok := ParseEcho(frame); ok && (len(frame) < 14+17 || len(e.Data) != len(frame)-14-17) {
			t.Fatalf("ParseEcho accepted % x as %+v", frame, e)
		}
	})
}
