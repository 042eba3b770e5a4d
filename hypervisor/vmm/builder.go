package vmm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"vsh/hypervisor"
	"vsh/hypervisor/acpi"
	"vsh/hypervisor/boot"
	"vsh/hypervisor/bus"
	"vsh/hypervisor/kvm"
	"vsh/hypervisor/legacy"
	"vsh/hypervisor/storage"
	"vsh/hypervisor/virtio"
	"vsh/hypervisor/vm"
)

// Build is the engine's builder: it assembles a KVM machine from an engine
// Config — guest memory and vCPUs (package vm), the PC devices a Linux
// guest expects (COM1, i8042, CMOS, the ACPI sleep register), one
// virtio-mmio device per disk, RNG, balloon, console and vsock — and loads
// the kernel. Every device gets its address and interrupt from the
// machine's device manager; nothing here picks an address.
func Build(cfg *hypervisor.Config, console io.Writer) (Machine, error) {
	if cfg.Boot.Kernel == "" {
		return nil, errors.New("no kernel to boot: the vsh engine boots Linux directly from <os><kernel>")
	}
	kernel, err := os.ReadFile(cfg.Boot.Kernel)
	if err != nil {
		return nil, fmt.Errorf("read kernel: %w", err)
	}
	var initrd []byte
	if cfg.Boot.Initrd != "" {
		if initrd, err = os.ReadFile(cfg.Boot.Initrd); err != nil {
			return nil, fmt.Errorf("read initrd: %w", err)
		}
	}
	b := &built{cfg: cfg, kernel: kernel, initrd: initrd}
	apicIDs := boot.APICIDs(cfg.Topology, cfg.VCPUs)
	opts := vm.OptionsFromConfig(cfg)
	opts.APICIDs = apicIDs
	pvm := opts.PVMFixups
	b.pvm = pvm
	opts.FilterCPUID = func(entries []kvm.CPUIDEntry, vcpu int) []kvm.CPUIDEntry {
		in := make([]boot.CPUIDEntry, len(entries))
		for i, e := range entries {
			in[i] = boot.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}
		out := boot.FilterCPUID(in, vcpu, cfg.Topology, cfg.VCPUs, boot.CPUIDOptions{PVM: pvm})
		res := make([]kvm.CPUIDEntry, len(out))
		for i, e := range out {
			res[i] = kvm.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}
		return res
	}
	opts.Boot = b.boot
	m, err := vm.New(opts)
	if err != nil {
		return nil, err
	}
	b.m = m
	b.apicIDs = apicIDs
	if err := b.addDevices(console); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// built is a machine assembled by Build; it implements Machine.
type built struct {
	cfg            *hypervisor.Config
	kernel, initrd []byte
	apicIDs        []uint32
	pvm            bool
	m              *vm.Machine

	uart       *legacy.UART
	kbd        *legacy.I8042
	transports []*virtio.MMIO
	balloon    *virtio.Balloon
	nets       []netDevice
	closers    []io.Closer
	cmdline    []string
	virtioACPI []acpi.MMIODevice // the virtio-mmio windows, for the DSDT
	rsdp       uint64
	closeOnce  sync.Once
}

// addDevices creates every device and registers it with the device manager.
func (b *built) addDevices(console io.Writer) error {
	dm := b.m.Devices()

	// COM1: the guest console.
	irq, err := dm.ClaimIRQ("com1", legacy.COM1IRQ)
	if err != nil {
		return err
	}
	b.uart = legacy.NewUART(console, irq, 0)
	if err := dm.AddPort("com1", legacy.COM1Base, legacy.UARTSize, b.uart); err != nil {
		return err
	}
	// The i8042's reset line and port 0xcf9 are the guest's reboot paths
	// (reboot=k, reboot=pci).
	reset := func() { b.m.RequestExit(vm.ExitReboot, "guest reset") }
	kbd := legacy.NewI8042(reset)
	// The PS/2 keyboard's interrupts: RequestShutdown presses
	// Ctrl-Alt-Del on it.
	kbdIRQ, err := dm.ClaimIRQ("i8042-kbd", legacy.I8042KbdIRQ)
	if err != nil {
		return err
	}
	auxIRQ, err := dm.ClaimIRQ("i8042-aux", legacy.I8042AuxIRQ)
	if err != nil {
		return err
	}
	kbd.SetInterrupts(kbdIRQ, auxIRQ)
	b.kbd = kbd
	if err := dm.AddPort("i8042-data", legacy.I8042DataPort, 1, kbd.Data()); err != nil {
		return err
	}
	if err := dm.AddPort("i8042-cmd", legacy.I8042CommandPort, 1, kbd.Command()); err != nil {
		return err
	}
	if err := dm.AddPort("reset-control", legacy.ResetControlPort, 1, legacy.NewResetControl(reset)); err != nil {
		return err
	}
	cmos := legacy.NewCMOS(time.Now)
	below, above := b.cfg.MemoryBytes, uint64(0)
	if below > vm.PCIHoleStart {
		below, above = vm.PCIHoleStart, b.cfg.MemoryBytes-vm.PCIHoleStart
	}
	cmos.SetMemory(below, above)
	if err := dm.AddPort("cmos", legacy.CMOSBase, legacy.CMOSSize, cmos); err != nil {
		return err
	}
	// The ACPI sleep control register: SLP_TYP=S5|SLP_EN is a poweroff.
	if err := dm.AddPort("acpi-sleep", acpi.SleepControlPort, 2, &sleepRegister{m: b.m}); err != nil {
		return err
	}

	for i, d := range b.cfg.Disks {
		disk, err := storage.OpenDisk(d.Path, string(d.Format), d.ReadOnly, string(d.Cache))
		if err != nil {
			return fmt.Errorf("disk %s: %w", diskName(d, i), err)
		}
		blk := virtio.NewBlk(disk, virtio.BlkConfig{Serial: d.Serial, ReadOnly: d.ReadOnly, Discard: d.Discard})
		if err := b.addVirtio("virtio-blk-"+diskName(d, i), blk); err != nil {
			blk.Close()
			return err
		}
	}
	for i, r := range b.cfg.RNGs {
		dev := virtio.NewRNG(virtio.RNGConfig{RateBytes: r.RateBytes, RatePeriod: time.Duration(r.RatePeriodMs) * time.Millisecond})
		if err := b.addVirtio(fmt.Sprintf("virtio-rng%d", i), dev); err != nil {
			return err
		}
	}
	if bc := b.cfg.Balloon; bc != nil {
		b.balloon = virtio.NewBalloon(virtio.BalloonConfig{
			StatsPeriod:       time.Duration(bc.StatsPeriodSeconds) * time.Second,
			FreePageReporting: bc.FreePageReporting,
			DeflateOnOOM:      bc.DeflateOnOOM,
		})
		if err := b.addVirtio("virtio-balloon", b.balloon); err != nil {
			return err
		}
		if cur := b.cfg.CurrentMemoryBytes; cur != 0 && cur < b.cfg.MemoryBytes {
			b.balloon.SetTarget(uint32((b.cfg.MemoryBytes - cur) / 4096))
		}
	}
	for i := range b.cfg.Consoles {
		// virtio consoles share the serial console's output; input goes to
		// COM1, the console `vsh console` attaches to.
		if err := b.addVirtio(fmt.Sprintf("virtio-console%d", i), virtio.NewConsole(console)); err != nil {
			return err
		}
	}
	if vs := b.cfg.Vsock; vs != nil {
		dev, err := virtio.NewVsock(vs.CID, vs.UDSPath)
		if err != nil {
			return fmt.Errorf("vsock: %w", err)
		}
		if err := b.addVirtio("virtio-vsock", dev); err != nil {
			return err
		}
	}
	if len(b.cfg.NICs) > 0 {
		if err := b.addNICs(); err != nil {
			return err
		}
	}
	return nil
}

func diskName(d hypervisor.Disk, i int) string {
	if d.Target != "" {
		return d.Target
	}
	return fmt.Sprintf("disk%d", i)
}

// queueNotifyOffset is the QueueNotify register of a virtio-mmio window.
const queueNotifyOffset = 0x50

// addVirtio puts dev behind a virtio-mmio transport in the next slot,
// wires an ioeventfd to each queue's doorbell where the host has them, and
// announces the slot on the kernel command line.
func (b *built) addVirtio(name string, dev virtio.Device) error {
	dm := b.m.Devices()
	var t *virtio.MMIO
	slot, err := dm.AddVirtioMMIO(name, deviceFunc(func() bus.Device { return t }))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	t = virtio.NewMMIO(dev, b.m.Memory(), slot.Interrupt)
	b.transports = append(b.transports, t)
	b.closers = append(b.closers, t)
	for q := range dev.QueueMaxSizes() {
		q := q
		if _, err := dm.WatchWrite(slot.Base+queueNotifyOffset, 4, uint64(q), func() { t.ServeQueue(q) }); err != nil {
			return fmt.Errorf("%s: queue %d doorbell: %w", name, q, err)
		}
	}
	b.cmdline = append(b.cmdline, slot.CmdlineArg())
	b.virtioACPI = append(b.virtioACPI, acpi.MMIODevice{Base: slot.Base, Size: slot.Size, IRQ: slot.IRQ})
	return nil
}

// deviceFunc forwards bus accesses to the device returned by get, so a
// transport can be registered before it is constructed with the slot's
// interrupt.
type deviceFunc func() bus.Device

func (f deviceFunc) Read(off uint64, data []byte)  { f().Read(off, data) }
func (f deviceFunc) Write(off uint64, data []byte) { f().Write(off, data) }

// boot loads the kernel at every (re)start.
func (b *built) boot(m *vm.Machine) error {
	rsdp, err := acpi.Write(m.Memory(), acpi.Config{APICIDs: toU8(b.apicIDs), IOAPICID: uint8(len(b.apicIDs)), VirtioMMIO: b.virtioACPI})
	if err != nil {
		return err
	}
	cmdline := acpiCmdline(b.cfg.Boot.Cmdline)
	if b.pvm {
		cmdline = pvmCmdline(cmdline)
	}
	if !hasParam(cmdline, "tsc_early_khz") {
		// The guest's TSC frequency straight from KVM: calibrating it
		// against the PIT fails where ring 0 is emulated, and without it a
		// kernel on the hardware-reduced ACPI platform (no PIT tick) cannot
		// calibrate its local APIC timer.
		var khz uint32
		if err := m.VCPU(0).Do(func(v *kvm.VCPU) (err error) { khz, err = v.TSCKHz(); return err }); err == nil && khz != 0 {
			cmdline = fmt.Sprintf("%s tsc_early_khz=%d", cmdline, khz)
		}
	}
	if extra := strings.Join(b.cmdline, " "); extra != "" {
		cmdline = strings.TrimSpace(cmdline + " " + extra)
	}
	loaded, err := boot.Load(m.Memory(), boot.Options{
		Kernel: b.kernel, Initrd: b.initrd, Cmdline: cmdline,
		ACPIRSDPAddr: rsdp, APICIDs: b.apicIDs,
	})
	if err != nil {
		return fmt.Errorf("load kernel: %w", err)
	}
	cr3, err := m.SetupLongMode(false)
	if err != nil {
		return err
	}
	return m.VCPU(0).SetEntry(vm.Entry{RIP: loaded.Entry, RSI: loaded.ZeroPage, CR3: cr3})
}

// hasParam reports whether cmdline sets kernel parameter p.
func hasParam(cmdline, p string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == p || strings.HasPrefix(f, p+"=") {
			return true
		}
	}
	return false
}

// acpiCmdline drops `noapic`: the engine's ACPI platform is hardware-reduced
// (package acpi), on which Linux drives no 8259 PIC and no PIT tick, so
// with the IO-APIC off too no device would have an interrupt. A kernel
// without ACPI finds the same IO-APIC in the MP table.
func acpiCmdline(cmdline string) string {
	f := strings.Fields(cmdline)
	out := f[:0]
	for _, p := range f {
		if p != "noapic" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// pvmCmdline adds the kernel parameters a Linux guest needs on a PVM host
// (this-machine-kvm.md): features whose instructions the nested layer
// cannot emulate in ring 0 are hidden, and page-table isolation is off so
// the SYSCALL fix-up's trampoline is visible from user mode. Parameters
// the user already set are left alone.
func pvmCmdline(cmdline string) string {
	has := func(p string) bool {
		for _, f := range strings.Fields(cmdline) {
			if f == p || strings.HasPrefix(f, p+"=") {
				return true
			}
		}
		return false
	}
	var add []string
	if !has("noxsave") {
		add = append(add, "noxsave")
	}
	if !has("clearcpuid") {
		add = append(add, "clearcpuid=smap,popcnt,fsgsbase,invpcid")
	}
	if !has("nopti") && !has("mitigations") && !has("pti") {
		add = append(add, "nopti")
	}
	return strings.TrimSpace(cmdline + " " + strings.Join(add, " "))
}

func toU8(ids []uint32) []uint8 {
	out := make([]uint8, len(ids))
	for i, id := range ids {
		out[i] = uint8(id)
	}
	return out
}

// sleepRegister is the ACPI sleep control/status register pair.
type sleepRegister struct{ m *vm.Machine }

func (s *sleepRegister) Read(off uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

func (s *sleepRegister) Write(off uint64, data []byte) {
	if off == 0 && len(data) > 0 && acpi.IsPowerOff(data[0]) {
		s.m.RequestExit(vm.ExitPoweroff, "ACPI S5")
	}
}

func (b *built) Start() error {
	if err := b.m.Start(); err != nil {
		return err
	}
	// On PVM hosts a guest user-mode SYSCALL never reaches ring 0; the
	// engine's fix-up watches for the guest kernel setting up SYSCALL and
	// redirects it (a no-op elsewhere).
	b.m.EnableSyscallFixup()
	return nil
}

func (b *built) Wait() Exit {
	e := b.m.Wait()
	switch e.Kind {
	case vm.ExitPoweroff:
		return Exit{Kind: ExitPoweroff, Detail: e.Detail}
	case vm.ExitReboot:
		return Exit{Kind: ExitReboot, Detail: e.Detail}
	case vm.ExitStopped:
		return Exit{Kind: ExitDestroyed, Detail: e.Detail}
	}
	detail := e.Detail
	if e.Err != nil {
		detail = strings.TrimSpace(detail + ": " + e.Err.Error())
	}
	return Exit{Kind: ExitCrash, Detail: detail}
}

func (b *built) Pause() error  { return b.m.Pause() }
func (b *built) Resume() error { return b.m.Resume() }
func (b *built) Stop()         { b.m.Stop() }

// RequestShutdown asks the guest to power off the way Firecracker does: it
// presses Ctrl-Alt-Del on the PS/2 keyboard. A Linux guest's init takes
// that as its shutdown request (busybox: ::ctrlaltdel:, systemd:
// ctrl-alt-del.target) and powers off through ACPI S5.
func (b *built) RequestShutdown() error {
	if err := b.kbd.CtrlAltDel(); err != nil {
		return fmt.Errorf("Operation not supported: cannot ask the guest to shut down: %w", err)
	}
	return nil
}

func (b *built) ConsoleInput(p []byte) { b.uart.Input(p) }

func (b *built) Stats() Stats {
	var st Stats
	for _, v := range b.m.Stats() {
		st.VCPUTimeNs = append(st.VCPUTimeNs, uint64(v.CPUTime))
		st.CPUTimeNs += uint64(v.CPUTime)
	}
	st.MemoryKiB = b.cfg.MemoryBytes / 1024
	st.RSSKiB = selfRSSKiB()
	if b.balloon != nil {
		st.BalloonKiB = (b.cfg.MemoryBytes - uint64(b.balloon.Actual())*4096) / 1024
	}
	return st
}

func (b *built) SetMemory(kib uint64) error {
	if b.balloon == nil {
		return errors.New("Operation not supported: this domain has no memory balloon")
	}
	max := b.cfg.MemoryBytes / 1024
	if kib > max {
		return fmt.Errorf("invalid argument: cannot set memory higher than max memory")
	}
	b.balloon.SetTarget(uint32((max - kib) / 4))
	return nil
}

func (b *built) Close() error {
	b.closeOnce.Do(func() {
		b.m.Stop()
		for _, c := range b.closers {
			c.Close()
		}
		b.m.Close()
	})
	return nil
}

// selfRSSKiB reads this process's resident set size.
func selfRSSKiB() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kib uint64
			fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%d", &kib)
			return kib
		}
	}
	return 0
}
