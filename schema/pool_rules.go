package schema

// poolRules is libvirt 9.0's <pool> vocabulary (storagepool.rng,
// storagecommon.rng), written as a rule table (see table.go). The source
// elements of all pool types are merged; semantics.go checks what each
// type requires.
const poolRules = `
=sized @unit=unit :uint

=pciaddr @domain=h16 @bus=h8 @slot=pcislot @function=pcifunc @multifunction=onoff

pool @type!=enum(dir|fs|netfs|logical|disk|iscsi|iscsi-direct|scsi|mpath|rbd|sheepdog|gluster|zfs|vstorage)
  name :objname
  uuid :uuid
  capacity &sized
  allocation &sized
  available &sized
  features
    cow @state!=yesno
  source
    name* :str
    host* @name!=str @port=port
    dir @path!=str
    device* @path!=str @part_separator=yesno
      freeExtent* @start!=uint @end!=uint
    adapter @type=enum(scsi_host|fc_host) @name=str @parent=str @managed=yesno @parent_wwnn=wwn @parent_wwpn=wwn @parent_fabric_wwn=wwn @wwnn=wwn @wwpn=wwn
      parentaddr @unique_id=posint
        address! &pciaddr
    format @type!=enum(auto|ext2|ext3|ext4|ufs|iso9660|udf|gfs|gfs2|vfat|hfs+|xfs|ocfs2|vmfs|nfs|cifs|glusterfs|unknown|lvm2|dos|dvh|gpt|mac|bsd|pc98|sun)
    protocol @ver!=str
    auth @type!=enum(chap|ceph) @username!=str
      secret! @uuid=str @usage=str
    vendor @name!=str
    product @name!=str
    initiator
      iqn! @name!=str
  target
    path :abspath
    permissions
      mode :octal
      owner :re([0-9]+|-1)
      group :re([0-9]+|-1)
      label :str
  refresh
    volume @allocation!=enum(default|capacity)
  fs:mount_opts
    fs:option* @name!=str
  rbd:config_opts
    rbd:option* @name!=str @value!=str
`
