package schema

// domainRules is libvirt 9.0's <domain> vocabulary (domain.rng,
// domaincommon.rng and the files they include), written as a rule table
// (see table.go).
const domainRules = `
domain @type!=enum(qemu|kqemu|kvm|xen|lxc|uml|openvz|test|vmware|hyperv|vbox|phyp|vz|bhyve) @id=int
  name! :name
  uuid :uuid
  memory :uint @unit=unit
  currentMemory :uint @unit=unit
  vcpu :uint @current=uint @placement=enum(static|auto) @cpuset=cpuset
  os!
    type! :enum(hvm|xen|linux|exe|uml) @arch=arch @machine=str
  devices
`
