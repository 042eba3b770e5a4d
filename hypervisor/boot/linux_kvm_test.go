package boot_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vsh/hypervisor"
	"vsh/hypervisor/boot"
	"vsh/hypervisor/kvm"
	"vsh/hypervisor/legacy"
	"vsh/hypervisor/vm"
)

// syncBuffer collects console output from the vCPU threads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLinuxBootOnKVM boots the guest kit's vmlinux on /dev/kvm with this
// package's zero page, e820 map, MP table and CPUID filter and the legacy
// UART, i8042 and CMOS, and checks what the kernel reports about them on
// the serial console, up to the RTC driver's last message (the last of
// these devices to probe). It takes minutes on a nested-PVM host (guest
// ring 0 is emulated there), so it is opt-in: VSH_LINUX_BOOT=1. Reaching
// /init and running it needs the engine's SYSCALL fix-up on PVM hosts and
// is the end-to-end test's business.
func TestLinuxBootOnKVM(t *testing.T) {
	if os.Getenv("VSH_LINUX_BOOT") == "" {
		t.Skip("long Linux boot test: set VSH_LINUX_BOOT=1")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("/dev/kvm unavailable: %v", err)
	}
	dir := os.Getenv("VSH_GUEST_DIR")
	if dir == "" {
		dir = "/var/cache/vsh/guest"
	}
	kernel, err := os.ReadFile(filepath.Join(dir, "vmlinux"))
	if err != nil {
		t.Skipf("guest kit not built (run guest/build.sh): %v", err)
	}
	// The uncompressed initramfs spares the guest a ring-0 gunzip.
	initrd, err := os.ReadFile(filepath.Join(dir, "initramfs.cpio"))
	if err != nil {
		t.Skipf("guest kit not built (run guest/build.sh): %v", err)
	}

	const nvcpus = 2
	const memBytes = 256 << 20
	topo := hypervisor.Topology{}
	ids := boot.APICIDs(topo, nvcpus)
	pvm := kvm.IsPVM()
	opts := vm.Options{MemoryBytes: memBytes, VCPUs: nvcpus, APICIDs: ids, PVMFixups: pvm}
	opts.FilterCPUID = func(entries []kvm.CPUIDEntry, vcpu int) []kvm.CPUIDEntry {
		in := make([]boot.CPUIDEntry, len(entries))
		for i, e := range entries {
			in[i] = boot.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}
		out := boot.FilterCPUID(in, vcpu, topo, nvcpus, boot.CPUIDOptions{PVM: pvm})
		res := make([]kvm.CPUIDEntry, len(out))
		for i, e := range out {
			res[i] = kvm.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}
		return res
	}
	cmdline := "console=ttyS0 reboot=k panic=1 pci=off nomodeset noxsave init_on_alloc=0 mitigations=off" +
		" clearcpuid=popcnt,smap,fsgsbase,invpcid"
	var loaded *boot.Loaded
	opts.Boot = func(m *vm.Machine) error {
		l, err := boot.Load(m.Memory(), boot.Options{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, APICIDs: ids})
		if err != nil {
			return err
		}
		loaded = l
		cr3, err := m.SetupLongMode(false)
		if err != nil {
			return err
		}
		return m.VCPU(0).SetEntry(vm.Entry{RIP: l.Entry, RSP: boot.StackTop, RSI: l.ZeroPage, CR3: cr3})
	}
	m, err := vm.New(opts)
	if err != nil {
		t.Skipf("cannot create a VM here: %v", err)
	}
	defer m.Close()

	out := &syncBuffer{}
	devs := m.Devices()
	irq, err := devs.ClaimIRQ("com1", legacy.COM1IRQ)
	if err != nil {
		t.Fatal(err)
	}
	uart := legacy.NewUART(out, irq, 0)
	resets := 0
	kbd := legacy.NewI8042(func() { resets++; m.RequestExit(vm.ExitReboot, "i8042 reset") })
	cmos := legacy.NewCMOS(nil)
	cmos.SetMemory(memBytes, 0)
	for _, d := range []struct {
		name       string
		base, size uint16
		dev        interface {
			Read(uint64, []byte)
			Write(uint64, []byte)
		}
	}{
		{"com1", legacy.COM1Base, legacy.UARTSize, uart},
		{"i8042-data", legacy.I8042DataPort, 1, kbd.Data()},
		{"i8042-cmd", legacy.I8042CommandPort, 1, kbd.Command()},
		{"cmos", legacy.CMOSBase, legacy.CMOSSize, cmos},
		{"post", legacy.POSTPort, 1, &legacy.Sink{ReadValue: 0xff}},
	} {
		if err := devs.AddPort(d.name, d.base, d.size, d.dev); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan vm.Exit, 1)
	go func() { done <- m.Wait() }()
	deadline := time.After(5 * time.Minute)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case e := <-done:
			t.Logf("console:\n%s", out.String())
			t.Fatalf("machine stopped early: %v", e)
		case <-deadline:
			t.Logf("console:\n%s", out.String())
			t.Fatal("the RTC driver did not finish probing within 5 minutes")
		case <-tick.C:
			if strings.Contains(out.String(), "rtc_cmos rtc_cmos: alarms up to one day") {
				break wait
			}
		}
	}
	t.Logf("RTC probed after %v", time.Since(start).Round(time.Millisecond))
	m.Stop()
	<-done
	log := out.String()
	t.Logf("console:\n%s", log)
	// The kernel's view of what this package built.
	want := []string{
		"BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
		"BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
		fmt.Sprintf("BIOS-e820: [mem 0x0000000000100000-0x%016x] usable", memBytes-1),
		"MPTABLE: OEM ID: VSH",
		"Command line: " + cmdline,
		"printk: console [ttyS0] enabled",
		"smp: Brought up 1 node, 2 CPUs",
		"serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
		"rtc_cmos rtc_cmos: setting system clock to " + time.Now().UTC().Format("2006-01-02"),
		"Unpacking initramfs",
	}
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("console lacks %q", w)
		}
	}
	if loaded.Format != boot.FormatELF {
		t.Errorf("format %s", loaded.Format)
	}
}
