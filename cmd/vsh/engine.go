package main

import (
	"vsh/hypervisor/driver/local"
	"vsh/hypervisor/vmm"
)

// The embedded KVM engine: the local driver launches VMM processes through
// vmm.Engine, and this binary becomes a VMM when started as "vsh __vmm".
func init() {
	local.DefaultEngine = vmm.Engine{}
	vmmMain = func(args []string) int { return vmm.Main(args, vmm.Build) }
}
