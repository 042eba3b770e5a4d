package vmm

import "errors"

// addNICs wires virtio-net devices; the network backend lands separately.
func (b *built) addNICs() error {
	return errors.New("unsupported configuration: network interfaces are not available in the vsh engine yet")
}
