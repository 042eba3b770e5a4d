package virtio_test

import (
	"fmt"

	"vsh/hypervisor/bus"
	"vsh/hypervisor/memory"
	"vsh/hypervisor/virtio"
)

type noIRQ struct{}

func (noIRQ) Trigger() error           { return nil }
func (noIRQ) SetLevel(high bool) error { return nil }

// The engine's side of a virtio device: build the device, wrap it in the
// MMIO transport, map the transport on the MMIO bus at the slot the device
// manager assigned, announce it on the kernel command line, and (where KVM
// has ioeventfd) call NotifyQueue when the guest writes QueueNotify.
func Example() {
	ram := make([]byte, 1<<20)
	mem, _ := memory.New(memory.Region{GPA: 0, Host: ram})
	var irq bus.Interrupt = noIRQ{} // the engine passes its GSI (or irqfd)

	rng := virtio.NewRNG(virtio.RNGConfig{})
	transport := virtio.NewMMIO(rng, mem, irq)
	defer transport.Close()

	var mmio bus.Bus
	const base, size = 0xd0000000, 0x1000
	if err := mmio.Register("virtio-rng", base, size, transport); err != nil {
		fmt.Println(err)
	}
	fmt.Println(virtio.CmdlineDevice(size, base, 5))

	var magic [4]byte
	mmio.Read(base+virtio.RegMagicValue, magic[:])
	fmt.Printf("%s\n", magic[:])
	// An ioeventfd on base+RegQueueNotify with datamatch 0 would call:
	transport.NotifyQueue(0)
	// Output:
	// virtio_mmio.device=4K@0xd0000000:5
	// virt
}
