package schema

// networkRules is libvirt 9.0's <network> vocabulary (network.rng,
// networkcommon.rng), written as a rule table (see table.go).
const networkRules = `
=virtualport @type=enum(802.1Qbg|802.1Qbh|openvswitch|midonet)
  parameters @managerid=h8 @typeid=h24 @typeidversion=h8 @instanceid=uuid @profileid=str @interfaceid=uuid

=bandwidth @classID=posint
  inbound @average=uint32 @peak=uint32 @floor=uint32 @burst=uint32
  outbound @average=uint32 @peak=uint32 @floor=uint32 @burst=uint32

=vlan @trunk=enum(yes)
  tag+ @id!=uint32 @nativeMode=enum(tagged|untagged)

=lease @expiry!=uint @unit=enum(seconds|minutes|hours)

network @connections=uint32 @ipv6=yesno @trustGuestRxFilters=yesno
  name! :objname
  metadata any
  uuid :uuid
  bridge @name=devname @zone=re([a-zA-Z0-9_\-]+) @stp=onoff @delay=uint @macTableManager=enum(kernel|libvirt)
  mtu @size!=port
  mac @address!=mac
  forward @dev=devname @mode=enum(nat|route|open|bridge|passthrough|private|vepa|hostdev) @managed=yesno
    interface* @dev!=devname @connections=uint32
    address* @type!=enum(pci) @domain=h16 @bus=h8 @slot=pcislot @function=pcifunc @multifunction=onoff @connections=uint32
    pf @dev!=devname
    driver @name!=enum(kvm|vfio)
    nat @ipv6=yesno
      address @start!=ipv4 @end!=ipv4
      port @start!=port @end!=port
  virtualport &virtualport
  portgroup* @name!=devname @default=yesno @trustGuestRxFilters=yesno
    virtualport &virtualport
    bandwidth &bandwidth
    vlan &vlan
  domain @name!=dnsname @localOnly=yesno
  dns @enable=yesno @forwardPlainNames=yesno
    forwarder* @addr=ip @domain=dnsname
    txt* @name!=dnsname @value!=str
    srv* @service!=str @protocol!=re(tcp|udp) @domain=dnsname @target=str @port=port @priority=port @weight=port
    host* @ip!=ip
      hostname+ :str
  bandwidth &bandwidth
  vlan &vlan
  port @isolated=yesno
  ip* @address=ip @netmask=ipv4 @prefix=prefix @family=re(ipv4|ipv6) @localPtr=yesno
    tftp @root!=str
    dhcp
      range* @start!=ip @end!=ip
        lease &lease
      host* @mac=mac @id=str @name=str @ip!=ip
        lease &lease
      bootp @file!=path @server=dnsname
  route* @family=re(ipv4|ipv6) @address!=ip @netmask=ipv4 @prefix=prefix @gateway!=ip @metric=uint32
  dnsmasq:options
    dnsmasq:option* @value!=str
`
