package vm

import (
	"testing"

	"vsh/hypervisor/kvm"
)

func TestDecodePopcnt(t *testing.T) {
	for _, tc := range []struct {
		insn     []byte
		dst, src int
		wide, ok bool
		n        int
	}{
		{[]byte{0xf3, 0x48, 0x0f, 0xb8, 0xc7}, 0, 7, true, true, 5},   // popcnt rax, rdi
		{[]byte{0xf3, 0x0f, 0xb8, 0xc7}, 0, 7, false, true, 4},        // popcnt eax, edi
		{[]byte{0xf3, 0x4d, 0x0f, 0xb8, 0xc1}, 8, 9, true, true, 5},   // popcnt r8, r9
		{[]byte{0xf3, 0x48, 0x0f, 0xb8, 0x07}, 0, 0, false, false, 0}, // memory operand: not handled
		{[]byte{0xf3, 0x90}, 0, 0, false, false, 0},                   // pause
		{[]byte{0xf3}, 0, 0, false, false, 0},
	} {
		dst, src, wide, n, ok := decodePopcnt(tc.insn)
		if ok != tc.ok || ok && (dst != tc.dst || src != tc.src || wide != tc.wide || n != tc.n) {
			t.Errorf("decodePopcnt(% x) = %d %d %v %d %v", tc.insn, dst, src, wide, n, ok)
		}
	}
	var r kvm.Regs
	*gpr(&r, 7) = 5
	*gpr(&r, 12) = 6
	if r.RDI != 5 || r.R12 != 6 {
		t.Errorf("gpr mapping: %+v", r)
	}
}

// TestPopcntInRing0 runs popcnt in guest ring 0, where PVM cannot emulate
// it and the fix-up must; elsewhere the CPU runs it.
func TestPopcntInRing0(t *testing.T) {
	// mov edi,0xf0f1; popcnt rax,rdi; mov dx,0x502; out dx,eax;
	// xor edi,edi; popcnt eax,edi; pushfq; pop rax; shr eax,6; and eax,1;
	// out dx,eax (ZF); mov dx,0x501; out dx,al; jmp $
	code := []byte{0xbf, 0xf1, 0xf0, 0x00, 0x00, 0xf3, 0x48, 0x0f, 0xb8, 0xc7, 0x66, 0xba, 0x02, 0x05, 0xef,
		0x31, 0xff, 0xf3, 0x0f, 0xb8, 0xc7, 0x9c, 0x58, 0xc1, 0xe8, 0x06, 0x83, 0xe0, 0x01, 0xef,
		0x66, 0xba, 0x01, 0x05, 0xee, 0xeb, 0xfe}
	m, d := newPayloadVM(t, code, payloadOpts{ring0: true})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, m); e.Kind != ExitPoweroff {
		t.Fatalf("exit = %v", e)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.markers) != 2 || d.markers[0] != 9 || d.markers[1] != 1 {
		t.Errorf("markers %v, want [9 1] (popcount of 0xf0f1, ZF for a zero source)", d.markers)
	}
	if kvm.IsPVM() && m.Stats()[0].Fixups != 2 {
		t.Errorf("%d fix-ups on a PVM host, want 2", m.Stats()[0].Fixups)
	}
}
