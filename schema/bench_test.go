package schema

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the user+system CPU time used so far by this process
// (who=RUSAGE_SELF) or by its waited-for children (RUSAGE_CHILDREN). The
// 1000-document benchmarks report CPU time beside wall time because on a
// shared, loaded machine wall time mostly measures the other processes.
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// typicalDomain is a realistic guest: SMP, NUMA, pinned vCPUs, virtio disk,
// NIC, rng, balloon, serial console.
var typicalDomain = []byte(`<domain type='kvm'>
  <name>web01</name>
  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>
  <title>Web server 01</title>
  <memory unit='GiB'>4</memory>
  <currentMemory unit='GiB'>4</currentMemory>
  <memoryBacking><hugepages><page size='2' unit='MiB' nodeset='0-1'/></hugepages></memoryBacking>
  <vcpu placement='static' current='2'>4</vcpu>
  <cputune>
    <vcpupin vcpu='0' cpuset='2'/>
    <vcpupin vcpu='1' cpuset='3'/>
    <emulatorpin cpuset='0-1'/>
  </cputune>
  <numatune><memory mode='strict' nodeset='0'/></numatune>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/var/lib/vsh/kernels/vmlinuz</kernel>
    <cmdline>console=ttyS0 root=/dev/vda1 rw</cmdline>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough' check='none'>
    <topology sockets='1' dies='1' cores='2' threads='2'/>
    <numa>
      <cell id='0' cpus='0-1' memory='2' unit='GiB'/>
      <cell id='1' cpus='2-3' memory='2' unit='GiB'/>
    </numa>
  </cpu>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='virtio'><stats period='10'/></memballoon>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
`)

func BenchmarkValidateDomain(b *testing.B) {
	if errs := Validate("bench.xml", typicalDomain); errs != nil {
		b.Fatal(errs)
	}
	b.SetBytes(int64(len(typicalDomain)))
	b.ReportAllocs()
	for b.Loop() {
		if errs := Validate("bench.xml", typicalDomain); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkXmllint1000 times xmllint --relaxng over the same 1000 documents
// in one process (its best case: the schema is loaded once), for comparison
// with BenchmarkValidate1000.
func BenchmarkXmllint1000(b *testing.B) {
	needXmllint(b)
	files := write1000(b)
	args := append([]string{"--noout", "--relaxng", filepath.Join(rngDir, "domain.rng")}, files...)
	start := cpuTime(syscall.RUSAGE_CHILDREN)
	defer func() {
		b.ReportMetric(float64(cpuTime(syscall.RUSAGE_CHILDREN)-start)/float64(b.N)/1e6, "cpu-ms/1000docs")
	}()
	for b.Loop() {
		if out, err := exec.Command("xmllint", args...).CombinedOutput(); err != nil {
			b.Fatalf("xmllint: %v\n%s", err, out[:min(len(out), 2000)])
		}
	}
}

// BenchmarkValidate1000 reads and validates the same 1000 files.
func BenchmarkValidate1000(b *testing.B) {
	files := write1000(b)
	start := cpuTime(syscall.RUSAGE_SELF)
	defer func() {
		b.ReportMetric(float64(cpuTime(syscall.RUSAGE_SELF)-start)/float64(b.N)/1e6, "cpu-ms/1000docs")
	}()
	for b.Loop() {
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			if errs := Validate(f, data); errs != nil {
				b.Fatal(errs)
			}
		}
	}
}

// BenchmarkValidateFiles1000 validates the same 1000 files with
// ValidateFiles (one worker per CPU), the way "vsh validate" does.
func BenchmarkValidateFiles1000(b *testing.B) {
	files := write1000(b)
	start := cpuTime(syscall.RUSAGE_SELF)
	defer func() {
		b.ReportMetric(float64(cpuTime(syscall.RUSAGE_SELF)-start)/float64(b.N)/1e6, "cpu-ms/1000docs")
	}()
	for b.Loop() {
		for i, errs := range ValidateFiles(files) {
			if errs != nil {
				b.Fatalf("%s: %v", files[i], errs)
			}
		}
	}
}

func write1000(b *testing.B) []string {
	dir := b.TempDir()
	files := make([]string, 1000)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("vm%04d.xml", i))
		if err := os.WriteFile(files[i], typicalDomain, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return files
}
