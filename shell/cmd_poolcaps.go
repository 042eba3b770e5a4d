package shell

import "vsh/hypervisor/driver"

// pool-capabilities: the pool types and volume formats a driver supports.

func init() {
	handlers["pool-capabilities"] = cmdPoolCapabilities
	insertCommand(&Command{Name: "pool-capabilities", Group: "pool", Brief: "storage pool capabilities",
		Description: "Returns capabilities of storage pool support."}, "pool-event")
}

func cmdPoolCapabilities(s *Shell, c *Call) error {
	pc, ok := s.conn.(driver.PoolCapabilities)
	if !ok {
		return fail(driver.Errorf(driver.ErrNoSupport, "virConnectGetStoragePoolCapabilities"), "failed to get storage pool capabilities")
	}
	xml, err := pc.StoragePoolCapabilities()
	if err != nil {
		return fail(err, "failed to get storage pool capabilities")
	}
	s.printf("%s\n", trimNL(string(xml)))
	return nil
}
