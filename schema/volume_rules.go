package schema

// volumeRules is libvirt 9.0's <volume> vocabulary (storagevol.rng,
// storagecommon.rng), written as a rule table (see table.go).
const volumeRules = `
=sized @unit=unit :uint

=format @type!=enum(unknown|raw|dir|bochs|cloop|dmg|iso|vpc|vdi|fat|vhd|ploop|luks|cow|qcow|qcow2|qed|vmdk|none|auto|ext2|ext3|ext4|ufs|iso9660|udf|gfs|gfs2|vfat|hfs+|xfs|ocfs2|vmfs|linux|fat16|fat32|linux-swap|linux-lvm|linux-raid|extended)

=permissions
  mode :octal
  owner :re([0-9]+|-1)
  group :re([0-9]+|-1)
  label :str

=timestamps
  atime :re([0-9]+(\.[0-9]{0,9})?)
  btime :re([0-9]+(\.[0-9]{0,9})?)
  ctime :re([0-9]+(\.[0-9]{0,9})?)
  mtime :re([0-9]+(\.[0-9]{0,9})?)

volume @type=enum(file|block|dir|network|netdir)
  name! :volname
  key :str
  source
    device* @path!=abspath
      extent+ @start!=uint @end!=uint
  capacity &sized
  allocation &sized
  physical &sized
  target!
    path :path
    format &format
    permissions &permissions
    timestamps &timestamps
    encryption @format!=enum(default|qcow|luks|luks2) @engine=enum(qemu|librbd)
      secret* @type!=enum(passphrase) @uuid=uuid @usage=str
      cipher @name!=str @size!=uint32 @mode=str @hash=str
      ivgen @name!=str @hash=str
    compat :re([0-9]+\.[0-9]+)
    nocow
    clusterSize &sized
    features
      lazy_refcounts
      extended_l2
  backingStore
    path! :path
    format &format
    permissions &permissions
    timestamps &timestamps
`
