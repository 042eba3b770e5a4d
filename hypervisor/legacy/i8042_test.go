package legacy

import (
	"errors"
	"fmt"
	"testing"
)

// i8042Rig drives an I8042 the way a guest driver does: port writes,
// status polls and data reads, with both interrupt lines recorded.
type i8042Rig struct {
	t         *testing.T
	k         *I8042
	data, cmd *I8042Port
	kbd, aux  *recordIRQ
}

func newI8042Rig(t *testing.T) *i8042Rig {
	k := NewI8042(nil)
	r := &i8042Rig{t: t, k: k, data: k.Data(), cmd: k.Command(), kbd: &recordIRQ{}, aux: &recordIRQ{}}
	k.SetInterrupts(r.kbd, r.aux)
	return r
}

func (r *i8042Rig) status() byte { b := []byte{0}; r.cmd.Read(0, b); return b[0] }
func (r *i8042Rig) read() byte   { b := []byte{0}; r.data.Read(0, b); return b[0] }

func (r *i8042Rig) edges() (kbd, aux int) {
	r.kbd.mu.Lock()
	defer r.kbd.mu.Unlock()
	r.aux.mu.Lock()
	defer r.aux.mu.Unlock()
	return r.kbd.edges, r.aux.edges
}

// i8042Step is one guest action and the bytes the controller must then
// offer, each with the interrupt it raises (irq 0: none, 1 or 12).
type i8042Step struct {
	name string
	cmd  []byte // written to port 0x64 (first)
	data []byte // written to port 0x60 (after cmd)
	host func() // a host action (after data), such as a key press
	want []byte // bytes to read back, in order
	aux  bool   // the bytes come from the AUX port
	irq  int
	ctr  int // if >= 0 after the step: expected command byte (read via 0x20 with interrupts off)
}

// run performs the step and checks each returned byte, its status bits
// and that exactly one interrupt announced it.
func (r *i8042Rig) run(s i8042Step) {
	r.t.Helper()
	k0, a0 := r.edges()
	for _, b := range s.cmd {
		r.cmd.Write(0, []byte{b})
	}
	for _, b := range s.data {
		r.data.Write(0, []byte{b})
	}
	if s.host != nil {
		s.host()
	}
	for i, want := range s.want {
		st := r.status()
		if st&kbdStatOBF == 0 {
			r.t.Fatalf("%s: byte %d (%#02x): output buffer empty (status %#02x)", s.name, i, want, st)
		}
		if got := st&kbdStatAuxData != 0; got != s.aux {
			r.t.Fatalf("%s: byte %d: AUX data flag %v, want %v", s.name, i, got, s.aux)
		}
		k, a := r.edges()
		wantK, wantA := k0, a0
		switch s.irq {
		case 1:
			wantK = k0 + i + 1
		case 12:
			wantA = a0 + i + 1
		}
		if k != wantK || a != wantA {
			r.t.Fatalf("%s: byte %d: IRQ1 edges %d want %d, IRQ12 edges %d want %d", s.name, i, k-k0, wantK-k0, a-a0, wantA-a0)
		}
		if got := r.read(); got != want {
			r.t.Fatalf("%s: byte %d = %#02x, want %#02x", s.name, i, got, want)
		}
	}
	if st := r.status(); st&kbdStatOBF != 0 {
		r.t.Fatalf("%s: unexpected extra byte (status %#02x)", s.name, st)
	}
	if k, a := r.edges(); s.irq == 0 && (k != k0 || a != a0) {
		r.t.Fatalf("%s: interrupt raised with interrupts disabled", s.name)
	}
}

// TestI8042LinuxProbe replays what Linux 6.1's i8042 and atkbd drivers do
// at boot (drivers/input/serio/i8042.c i8042_probe, atkbd.c atkbd_connect)
// on a translating controller, then a host Ctrl-Alt-Del.
func TestI8042LinuxProbe(t *testing.T) {
	r := newI8042Rig(t)
	steps := []i8042Step{
		{name: "controller self test", cmd: []byte{0xaa}, want: []byte{0x55}, irq: 1},
		// i8042_controller_init: read CTR until stable, disable the
		// keyboard and its interrupt, keep translation.
		{name: "read CTR", cmd: []byte{0x20}, want: []byte{0x45}, irq: 1},
		{name: "read CTR again", cmd: []byte{0x20}, want: []byte{0x45}, irq: 1},
		{name: "write CTR: kbd disabled, no interrupts", cmd: []byte{0x60}, data: []byte{0x54}},
		{name: "CTR reads back", cmd: []byte{0x20}, want: []byte{0x54}},
		// i8042_check_aux: loopback, then bit assignment, then IRQ 12.
		{name: "AUX loopback", cmd: []byte{0xd3}, data: []byte{0x5a}, want: []byte{0x5a}, aux: true},
		{name: "AUX off", cmd: []byte{0x60}, data: []byte{0x74}},
		{name: "AUX off reads back", cmd: []byte{0x20}, want: []byte{0x74}},
		{name: "AUX on", cmd: []byte{0x60}, data: []byte{0x54}},
		{name: "AUX interrupt on", cmd: []byte{0x60}, data: []byte{0x56}},
		{name: "AUX IRQ delivery test", cmd: []byte{0xd3}, data: []byte{0xa5}, want: []byte{0xa5}, aux: true, irq: 12},
		{name: "AUX off again", cmd: []byte{0x60}, data: []byte{0x74}},
		// i8042_set_mux_mode(true): the third loop byte comes back
		// unchanged, so the controller is not an active multiplexer.
		{name: "MUX probe 1", cmd: []byte{0xd3}, data: []byte{0xf0}, want: []byte{0xf0}, aux: true},
		{name: "MUX probe 2", cmd: []byte{0xd3}, data: []byte{0x56}, want: []byte{0x56}, aux: true},
		{name: "MUX probe 3", cmd: []byte{0xd3}, data: []byte{0xa4}, want: []byte{0xa4}, aux: true},
		{name: "keyboard interface test", cmd: []byte{0xab}, want: []byte{0x00}},
		// i8042_enable_kbd_port.
		{name: "enable keyboard port and IRQ 1", cmd: []byte{0x60}, data: []byte{0x65}},
		// atkbd_probe, atkbd_reset_state, atkbd_activate.
		{name: "keyboard reset", data: []byte{0xff}, want: []byte{0xfa, 0xaa}, irq: 1},
		{name: "get ID (translated)", data: []byte{0xf2}, want: []byte{0xfa, 0xab, 0x41}, irq: 1},
		{name: "deactivate", data: []byte{0xf5}, want: []byte{0xfa}, irq: 1},
		{name: "set LEDs", data: []byte{0xed}, want: []byte{0xfa}, irq: 1},
		{name: "LEDs off", data: []byte{0x00}, want: []byte{0xfa}, irq: 1},
		{name: "set typematic rate", data: []byte{0xf3}, want: []byte{0xfa}, irq: 1},
		{name: "fastest rate", data: []byte{0x00}, want: []byte{0xfa}, irq: 1},
		{name: "enable scanning", data: []byte{0xf4}, want: []byte{0xfa}, irq: 1},
		{name: "echo", data: []byte{0xee}, want: []byte{0xee}, irq: 1},
		{name: "get scancode set (translated 2)", data: []byte{0xf0, 0x00}, want: []byte{0xfa, 0xfa, 0x41}, irq: 1},
		{name: "unknown keyboard command", data: []byte{0xea}, want: []byte{0xfe}, irq: 1},
		{name: "AUX device write: nothing attached", cmd: []byte{0xd4}, data: []byte{0xf2}, want: []byte{0xfe}, aux: true},
	}
	for _, s := range steps {
		r.run(s)
	}
	// Set 1 (translated): Ctrl, Alt, E0 Delete made, then released in
	// reverse order.
	press := func() {
		if err := r.k.CtrlAltDel(); err != nil {
			t.Fatal(err)
		}
	}
	r.run(i8042Step{name: "Ctrl-Alt-Del", host: press, want: []byte{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}, irq: 1})
	if r.k.Resets() != 0 {
		t.Fatal("probe pulsed the reset line")
	}
}

// TestI8042CtrlAltDelForms checks the scancodes in each keyboard mode and
// that a disabled keyboard does not take key presses.
func TestI8042CtrlAltDelForms(t *testing.T) {
	set2 := []byte{0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}
	set1 := []byte{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}
	tests := []struct {
		name  string
		setup []i8042Step
		want  []byte
		err   error
	}{
		{"power-on defaults: translated", nil, set1, nil},
		{"untranslated set 2", []i8042Step{{name: "xlate off", cmd: []byte{0x60}, data: []byte{0x05}}}, set2, nil},
		{"untranslated set 1", []i8042Step{
			{name: "xlate off", cmd: []byte{0x60}, data: []byte{0x05}},
			{name: "select set 1", data: []byte{0xf0, 0x01}, want: []byte{0xfa, 0xfa}, irq: 1},
			{name: "get set", data: []byte{0xf0, 0x00}, want: []byte{0xfa, 0xfa, 0x01}, irq: 1},
		}, set1, nil},
		{"keyboard interface disabled", []i8042Step{{name: "disable", cmd: []byte{0xad}}}, nil, ErrKeyboardDisabled},
		{"scanning disabled", []i8042Step{{name: "disable", data: []byte{0xf5}, want: []byte{0xfa}, irq: 1}}, nil, ErrKeyboardDisabled},
		{"scanning re-enabled", []i8042Step{
			{name: "disable", data: []byte{0xf5}, want: []byte{0xfa}, irq: 1},
			{name: "enable", data: []byte{0xf4}, want: []byte{0xfa}, irq: 1},
		}, set1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newI8042Rig(t)
			for _, s := range tc.setup {
				r.run(s)
			}
			press := func() {
				if err := r.k.CtrlAltDel(); !errors.Is(err, tc.err) {
					t.Fatalf("CtrlAltDel: %v, want %v", err, tc.err)
				}
			}
			irq := 1
			if tc.want == nil {
				irq = 0
			}
			r.run(i8042Step{name: "keys", host: press, want: tc.want, irq: irq})
		})
	}
}

// TestI8042InterruptGating: bytes wait without an interrupt while the
// command byte disables it, and enabling it announces the waiting byte.
func TestI8042InterruptGating(t *testing.T) {
	r := newI8042Rig(t)
	r.run(i8042Step{name: "interrupts off", cmd: []byte{0x60}, data: []byte{0x44}})
	if err := r.k.CtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	if k, _ := r.edges(); k != 0 {
		t.Fatalf("%d IRQ1 edges with interrupts disabled", k)
	}
	r.cmd.Write(0, []byte{0x60})
	r.data.Write(0, []byte{0x45})
	if k, _ := r.edges(); k != 1 {
		t.Fatalf("%d IRQ1 edges after enabling, want 1", k)
	}
	if got := r.read(); got != 0x1d {
		t.Fatalf("first byte %#02x, want 0x1d", got)
	}
	if k, _ := r.edges(); k != 2 {
		t.Fatalf("%d IRQ1 edges after the first read, want 2 (one per byte)", k)
	}
}

// TestI8042OutputBounded: a guest that never reads its keyboard cannot make
// the queue grow, and the flush Linux does (up to 16 reads) empties it.
func TestI8042OutputBounded(t *testing.T) {
	r := newI8042Rig(t)
	var errs int
	for i := 0; i < 10; i++ {
		if err := r.k.CtrlAltDel(); err != nil {
			errs++
		}
	}
	if errs != 8 {
		t.Fatalf("%d of 10 presses refused, want 8 (two fit in 16 bytes)", errs)
	}
	for i := 0; i < outputCapacity; i++ {
		r.read()
	}
	if st := r.status(); st&kbdStatOBF != 0 {
		t.Fatalf("output buffer not empty after %d reads", outputCapacity)
	}
}

// FuzzI8042 feeds arbitrary port traffic: the model must not panic, must
// keep its queue bounded, and must answer the self test afterwards.
func FuzzI8042(f *testing.F) {
	f.Add([]byte{0x64, 0xaa, 0x60, 0xff, 0x60, 0xf2})
	f.Add([]byte{0x64, 0xd3, 0x60, 0x5a, 0x64, 0x60, 0x60, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newI8042Rig(t)
		for i := 0; i+1 < len(ops); i += 2 {
			switch ops[i] % 4 {
			case 0:
				r.data.Write(0, []byte{ops[i+1]})
			case 1:
				if ops[i+1] >= 0xf0 && ops[i+1]&1 == 0 {
					continue // the reset line: counted, not interesting here
				}
				r.cmd.Write(0, []byte{ops[i+1]})
			case 2:
				r.read()
			case 3:
				_ = r.k.CtrlAltDel()
			}
			if n := len(r.k.out); n > outputCapacity {
				t.Fatalf("output queue grew to %d", n)
			}
		}
		for r.status()&kbdStatOBF != 0 {
			r.read()
		}
		r.cmd.Write(0, []byte{0xaa})
		if got := r.read(); got != 0x55 {
			t.Fatal(fmt.Sprintf("self test after fuzzing: %#02x", got))
		}
	})
}
