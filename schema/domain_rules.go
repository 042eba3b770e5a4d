package schema

// domainRules is libvirt 9.0's <domain> vocabulary (domain.rng,
// domaincommon.rng and the files they include), written as a rule table
// (see table.go). Where libvirt chooses content by a type attribute
// (disk sources, interface types, character devices), the variants are
// merged: every attribute and child of any variant is accepted, and the
// type attribute itself is checked against the full list.
const domainRules = `
=sized @unit=unit :uint
=yes @state=onoff
=alias @name!=alias
=pciaddr @domain=h16 @bus=h8 @slot=pcislot @function=pcifunc @multifunction=onoff

=address @type!=enum(pci|drive|virtio-serial|ccid|usb|spapr-vio|ccw|isa|virtio-mmio|dimm|unassigned) &pciaddr @controller=uint @target=uint @unit=uint @port=str @slot=str @reg=str @cssid=str @ssid=str @devno=str @iobase=str @irq=str @base=hexuint
  zpci @uid=h16 @fid=h32

# children every device may have
=dev
  alias &alias
  address &address
  acpi @index=uint

# devices without an ACPI index
=devnoacpi
  alias &alias
  address &address

=encryption @format!=enum(default|qcow|luks|luks2) @engine=enum(qemu|librbd)
  secret* @type!=enum(passphrase) @uuid=uuid @usage=str
  cipher @name!=str @size!=uint32 @mode=str @hash=str
  ivgen @name!=str @hash=str

=seclabel @model=str @relabel=yesno @labelskip=enum(yes)
  label :str

=reconnect @enabled!=yesno @timeout=uint32

=auth @username!=str
  secret! @type!=enum(ceph|iscsi) @uuid=uuid @usage=str

# disk and backing store sources (all variants merged)
=disksource @file=str @fdgroup=str @index=posint @startupPolicy=enum(mandatory|requisite|optional) @dev=str @dir=str @protocol=enum(nbd|iscsi|rbd|sheepdog|gluster|vxhs|nfs|http|https|ftp|ftps|tftp) @name=str @tls=yesno @tlsHostname=str @query=str @pool=str @volume=volname @mode=enum(host|direct) @type=enum(pci|unix) @namespace=h32 @managed=yesno @path=str @writeFiltering=yesno
  slices
    slice* @type!=enum(storage) @offset!=uint @size!=posint
  privateData any
  encryption &encryption
  seclabel* &seclabel
  reservations @managed=yesno
    source @type!=enum(unix) @path!=abspath @mode!=enum(server|client)
      reconnect &reconnect
  host* @transport=enum(tcp|rdma|unix) @name=str @port=uint @socket=str
  snapshot @name!=genname
  config @file!=abspath
  auth &auth
  initiator
    iqn @name!=str
  cookies
    cookie+ @name!=str :str
  readahead @size!=posint
  timeout @seconds!=posint
  ssl @verify!=yesno
  identity @user=str @group=str
  address &pciaddr @type=enum(pci)
  reconnect &reconnect
  adapter @type=enum(scsi_host|fc_host) @name=str @parent=str @managed=yesno @parent_wwnn=wwn @parent_wwpn=wwn @parent_fabric_wwn=wwn @wwnn=wwn @wwpn=wwn
    parentaddr @unique_id=posint
      address! &pciaddr

=format @type!=enum(raw|dir|bochs|cloop|dmg|iso|vpc|vdi|fat|vhd|ploop|luks|cow|qcow|qcow2|qed|vmdk|fat)
  metadata_cache
    max_size &sized

=backing @type=enum(file|block|dir|network|volume|nvme|vhostuser) @index=uint
  format &format
  source &disksource
  backingStore &backing

=chardev @type!=enum(dev|file|pipe|unix|tcp|udp|null|stdio|vc|pty|spicevmc|spiceport|nmdm|qemu-vdagent|dbus) @tty=str
  source* @mode=str @path=str @host=str @service=str @channel=str @master=str @slave=str @append=onoff @tls=yesno
    seclabel* &seclabel
    reconnect &reconnect
    clipboard @copypaste!=yesno
    mouse @mode!=enum(server|client)
  protocol @type=enum(raw|telnet|telnets|tls)
  log @file!=abspath @append=onoff
  target @type=str @port=str @name=str @address=str @state=enum(connected|disconnected)
    model @name!=enum(isa-serial|usb-serial|pci-serial|spapr-vty|pl011|16550a|sclpconsole|sclplmconsole|isa-debugcon)
  alias &alias
  address &address

=virtualport @type=enum(802.1Qbg|802.1Qbh|openvswitch|midonet)
  parameters @managerid=h8 @typeid=h24 @typeidversion=h8 @instanceid=uuid @profileid=str @interfaceid=uuid

=bandwidth @classID=posint
  inbound @average=uint32 @peak=uint32 @floor=uint32 @burst=uint32
  outbound @average=uint32 @peak=uint32 @floor=uint32 @burst=uint32

=usbsource @startupPolicy=enum(mandatory|requisite|optional) @guestReset=enum(off|uninitialized|on) @missing=yesno @writeFiltering=yesno @protocol=enum(adapter|iscsi|vhost) @name=str @wwpn=str
  vendor @id!=re(0x[0-9a-fA-F]{4})
  product @id!=re(0x[0-9a-fA-F]{4})
  address @type=enum(pci|usb|ccw) &pciaddr @bus=str @device=str @target=str @unit=str @uuid=uuid @cssid=str @ssid=str @devno=str
  adapter @name!=str
  host* @name!=str @port=uint
  auth &auth
  initiator
    iqn @name!=str
  block :abspath
  char :abspath
  interface :devname

=capdef @state!=onoff

domain @type!=enum(qemu|kqemu|kvm|xen|lxc|uml|openvz|test|vmware|hyperv|vbox|phyp|vz|bhyve|hvf) @id=int
  name! :name
  uuid :uuid
  genid :re(|[a-fA-F0-9]{32}|[a-fA-F0-9]{8}-([a-fA-F0-9]{4}-){3}[a-fA-F0-9]{12})
  title :re([^\n]*)
  description :str
  metadata any
  cpu @mode=enum(custom|host-model|host-passthrough|maximum) @match=enum(minimum|exact|strict) @check=enum(none|partial|full) @migratable=onoff
    model @fallback=enum(allow|forbid) @vendor_id=re(.{12}) :str
    vendor :str
    topology @sockets!=posint @dies=posint @cores!=posint @threads!=posint
    feature* @policy!=enum(force|require|optional|disable|forbid) @name!=re([a-zA-Z0-9\-_\.]+)
    cache @level=enum(1|2|3) @mode!=enum(emulate|passthrough|disable)
    maxphysaddr @mode!=enum(emulate|passthrough) @bits=uint
    numa
      cell+ @id=uint @cpus=cpuset @memory!=uint @unit=unit @memAccess=enum(shared|private) @discard=yesno
        distances
          sibling+ @id!=uint @value!=numadist
        cache* @level!=uint @associativity!=enum(none|direct|full) @policy!=enum(none|writeback|writethrough)
          size! @value!=uint @unit!=unit
          line! @value!=uint @unit!=unit
      interconnects
        latency* @initiator!=uint @target!=uint @cache=uint @type!=enum(access|read|write) @value!=uint
        bandwidth* @initiator!=uint @target!=uint @cache=uint @type!=enum(access|read|write) @value!=uint @unit=unit
  sysinfo* @type!=enum(smbios|fwcfg)
    bios
      entry+ @name!=enum(vendor|version|date|release) :str
    system
      entry+ @name!=enum(manufacturer|product|version|serial|uuid|sku|family) :str
    baseBoard*
      entry+ @name!=enum(manufacturer|product|version|serial|asset|location) :str
    chassis
      entry+ @name!=enum(manufacturer|version|serial|asset|sku) :str
    oemStrings
      entry+ :str
    entry* @name!=str @file=str :str
  bootloader :str
  bootloader_args :str
  os! @firmware=enum(bios|efi)
    type! @arch=arch @machine=str :enum(hvm|xen|linux|xenpvh|exe|uml)
    firmware
      feature+ @enabled!=yesno @name!=enum(enrolled-keys|secure-boot)
    loader @readonly=yesno @secure=yesno @type=enum(rom|pflash) @stateless=yesno :str
    nvram @template=abspath @type=enum(file|block|dir|network|volume|nvme|vhostuser) :str
      source &disksource
    kernel :str
    initrd :str
    root :str
    cmdline :str
    dtb :str
    boot* @dev!=enum(hd|fd|cdrom|network)
    bootmenu @enable!=yesno @timeout=port
    smbios @mode!=enum(emulate|host|sysinfo)
    bios @useserial=yesno @rebootTimeout=range(-1..65535)
    acpi
      table* @type!=enum(slic) :abspath
    init :abspath
    initarg* :str
    initenv* @name!=re([a-zA-Z_]+[a-zA-Z0-9_]*) :str
    initdir :abspath
    inituser :str
    initgroup :str
  clock @offset!=enum(localtime|utc|timezone|variable|absolute) @adjustment=str @timezone=str @basis=enum(utc|localtime) @start=uint
    timer* @name!=enum(platform|rtc|tsc|hpet|pit|kvmclock|hypervclock|armvtimer) @track=enum(boot|guest|wall|realtime) @tickpolicy=enum(delay|merge|discard|catchup) @frequency=uint @mode=enum(auto|native|emulate|paravirt|smpsafe) @present=yesno
      catchup @threshold=uint @slew=uint @limit=uint
  memory @unit=unit @dumpCore=onoff :uint
  maxMemory @slots!=uint @unit=unit :uint
  currentMemory @unit=unit :uint
  memoryBacking
    hugepages
      page* @size!=uint @unit=unit @nodeset=cpuset
    nosharepages
    locked
    source @type!=enum(file|anonymous|memfd)
    access @mode!=enum(shared|private)
    allocation @mode=enum(immediate|ondemand) @threads=uint
    discard
  vcpu @placement=enum(static|auto) @cpuset=cpuset @current=range(1..65535) :range(1..65535)
  vcpus
    vcpu* @id!=uint @enabled!=yesno @hotpluggable=yesno @order=uint
  iothreads :uint
  iothreadids
    iothread* @id!=uint @thread_pool_min=uint @thread_pool_max=uint
  defaultiothread @thread_pool_min=uint @thread_pool_max=uint
  blkiotune
    weight :uint
    device*
      path! :abspath
      weight :uint
      read_iops_sec :uint
      write_iops_sec :uint
      read_bytes_sec :uint
      write_bytes_sec :uint
  memtune
    hard_limit &sized
    soft_limit &sized
    min_guarantee &sized
    swap_hard_limit &sized
  cputune
    shares :uint
    global_period :uint
    global_quota :int
    period :uint
    quota :int
    emulator_period :uint
    emulator_quota :int
    iothread_period :uint
    iothread_quota :int
    vcpupin* @vcpu!=uint @cpuset!=cpuset
    emulatorpin @cpuset!=cpuset
    iothreadpin* @iothread!=uint @cpuset!=cpuset
    vcpusched* @vcpus=cpuset @scheduler!=enum(batch|idle|fifo|rr) @priority=port
    iothreadsched* @iothreads=cpuset @scheduler!=enum(batch|idle|fifo|rr) @priority=port
    emulatorsched @scheduler!=enum(batch|idle|fifo|rr) @priority=port
    cachetune* @vcpus!=cpuset @id=str
      cache+ @id!=uint @level!=uint @type!=enum(both|code|data) @size!=uint @unit=unit
      monitor* @level=uint @vcpus!=cpuset
    memorytune* @vcpus!=cpuset
      node+ @id!=uint @bandwidth!=uint
      monitor* @vcpus!=cpuset
  numatune
    memory @mode=enum(strict|preferred|interleave|restrictive) @placement=enum(static|auto) @nodeset=cpuset
    memnode* @cellid!=uint @mode!=enum(strict|preferred|interleave|restrictive) @nodeset!=cpuset
  resource
    partition :abspath
    fibrechannel @appid!=str
  features
    pae
    acpi
    apic @eoi=onoff
    hap &yes
    viridian
    privnet
    pvspinlock &yes
    pmu &yes
    vmport &yes
    vmcoreinfo &yes
    htm &yes
    nested-hv &yes
    ccf-assist &yes
    sbbc @value!=enum(broken|workaround|fixed)
    cfpc @value!=enum(broken|workaround|fixed)
    ibs @value!=enum(broken|workaround|fixed-ibs|fixed-ccd|fixed-na)
    hyperv @mode=enum(custom|passthrough)
      relaxed &capdef
      vapic &capdef
      spinlocks &capdef @retries=uint
      vpindex &capdef
      runtime &capdef
      synic &capdef
      stimer &capdef @state=onoff
        direct! &capdef
      reset &capdef
      vendor_id &capdef @value=re([^,]{0,12})
      frequencies &capdef
      reenlightenment &capdef
      tlbflush &capdef
      ipi &capdef
      evmcs &capdef
      avic &capdef
    kvm
      hidden &capdef
      hint-dedicated &capdef
      poll-control &capdef
      pv-ipi &capdef
      dirty-ring &capdef @size=uint
    xen
      e820_host &capdef
      passthrough &capdef @mode=str
    capabilities @policy!=enum(default|allow|deny)
      audit_control &capdef
      audit_write &capdef
      block_suspend &capdef
      chown &capdef
      dac_override &capdef
      dac_read_search &capdef
      fowner &capdef
      fsetid &capdef
      ipc_lock &capdef
      ipc_owner &capdef
      kill &capdef
      lease &capdef
      linux_immutable &capdef
      mac_admin &capdef
      mac_override &capdef
      mknod &capdef
      net_admin &capdef
      net_bind_service &capdef
      net_broadcast &capdef
      net_raw &capdef
      setgid &capdef
      setfcap &capdef
      setpcap &capdef
      setuid &capdef
      sys_admin &capdef
      sys_boot &capdef
      sys_chroot &capdef
      sys_module &capdef
      sys_nice &capdef
      sys_pacct &capdef
      sys_ptrace &capdef
      sys_rawio &capdef
      sys_resource &capdef
      sys_time &capdef
      sys_tty_config &capdef
      syslog &capdef
      wake_alarm &capdef
    gic @version=enum(host|2|3)
    smm &yes
      tseg &sized
    ioapic @driver!=enum(qemu|kvm)
    hpt @resizing=enum(enabled|disabled|required)
      maxpagesize &sized
    msrs @unknown!=enum(ignore|fault)
    tcg
      tb-cache &sized
  on_reboot :enum(destroy|restart|preserve|rename-restart)
  on_poweroff :enum(destroy|restart|preserve|rename-restart)
  on_crash :enum(destroy|restart|preserve|rename-restart|coredump-destroy|coredump-restart)
  on_lockfailure :enum(poweroff|restart|pause|ignore)
  pm
    suspend-to-mem @enabled=yesno
    suspend-to-disk @enabled=yesno
  perf
    event+ @name!=enum(cmt|mbmt|mbml|cpu_cycles|instructions|cache_references|cache_misses|branch_instructions|branch_misses|bus_cycles|stalled_cycles_frontend|stalled_cycles_backend|ref_cpu_cycles|cpu_clock|task_clock|page_faults|context_switches|cpu_migrations|page_faults_min|page_faults_maj|alignment_faults|emulation_faults) @enabled!=yesno
  idmap
    uid* @start!=uint @target!=uint @count!=uint
    gid* @start!=uint @target!=uint @count!=uint
  seclabel* @type=enum(dynamic|static|none) @model=str @relabel=yesno
    label :str
    imagelabel :str
    baselabel :str
  keywrap
    cipher+ @name!=enum(aes|dea) @state!=onoff
  launchSecurity @type!=enum(sev|s390-pv) @kernelHashes=yesno
    cbitpos :uint
    reducedPhysBits :uint
    policy :str
    handle :uint
    dhCert :str
    session :str
  devices
    emulator :str
    disk* @type=enum(file|block|dir|network|volume|nvme|vhostuser) @device=enum(floppy|disk|cdrom|lun) @model=enum(virtio|virtio-transitional|virtio-non-transitional) @rawio=yesno @sgio=enum(filtered|unfiltered) @snapshot=enum(no|internal|external|manual)
      &dev
      driver @name=genname @type=enum(aio|raw|dir|bochs|cloop|dmg|iso|vpc|vdi|fat|vhd|ploop|luks|cow|qcow|qcow2|qed|vmdk) @cache=enum(default|none|writeback|writethrough|directsync|unsafe) @error_policy=enum(stop|report|ignore|enospace) @rerror_policy=enum(stop|report|ignore) @io=enum(threads|native|io_uring) @ioeventfd=onoff @event_idx=onoff @copy_on_read=onoff @discard=enum(unmap|ignore) @iothread=uint @detect_zeroes=enum(off|on|unmap) @queues=posint @queue_size=posint @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
        metadata_cache
          max_size &sized
      source &disksource
      mirror @file=abspath @format=str @job=enum(copy|active-commit) @type=enum(file|block|dir|network|volume|nvme|vhostuser) @ready=enum(yes|abort|pivot)
        format &format
        source &disksource
        backingStore &backing
      backingStore &backing
      auth &auth
      target! @dev!=diskdev @bus=enum(ide|fdc|scsi|virtio|xen|usb|uml|sata|sd) @tray=enum(open|closed) @removable=onoff @rotation_rate=posint
      boot @order!=posint @loadparm=str
      backenddomain @name!=name
      readonly
      shareable
      transient @shareBacking=yesno
      serial :str
      encryption &encryption
      iotune
        total_bytes_sec :uint
        read_bytes_sec :uint
        write_bytes_sec :uint
        total_iops_sec :uint
        read_iops_sec :uint
        write_iops_sec :uint
        total_bytes_sec_max :uint
        read_bytes_sec_max :uint
        write_bytes_sec_max :uint
        total_iops_sec_max :uint
        read_iops_sec_max :uint
        write_iops_sec_max :uint
        size_iops_sec :uint
        group_name :str
        total_bytes_sec_max_length :uint
        read_bytes_sec_max_length :uint
        write_bytes_sec_max_length :uint
        total_iops_sec_max_length :uint
        read_iops_sec_max_length :uint
        write_iops_sec_max_length :uint
      geometry @cyls!=uint @heads!=uint @secs!=uint @trans=enum(auto|none|lba)
      blockio @logical_block_size=uint @physical_block_size=uint
      wwn :wwn
      vendor :re([\x20-\x7E]{1,8})
      product :re([\x20-\x7E]{1,16})
      privateData any
    controller* @type!=enum(fdc|sata|ccid|scsi|usb|ide|isa|pci|virtio-serial|xenbus) @index=uint @model=str @ports=uint @vectors=uint @maxGrantFrames=uint @maxEventChannels=uint
      &dev
      master @startport!=uint
      model @name!=enum(spapr-pci-host-bridge|pci-bridge|i82801b11-bridge|pcie-pci-bridge|ioh3420|pcie-root-port|x3130-upstream|xio3130-downstream|pxb|pxb-pcie)
      target @chassisNr=h8 @chassis=h8 @port=h8 @busNr=h8 @index=h8 @hotplug=onoff
        node :uint
      pcihole64 &sized
      driver @queues=uint @cmd_per_lun=uint @max_sectors=uint @ioeventfd=onoff @iothread=uint @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
    lease*
      lockspace! :str
      key! :str
      target! @path!=str @offset=uint
    filesystem* @type=enum(file|block|mount|bind|template|ram) @accessmode=enum(passthrough|mapped|squash) @multidevs=enum(default|remap|forbid|warn) @fmode=octal @dmode=octal @model=enum(virtio|virtio-transitional|virtio-non-transitional)
      &dev
      driver @type=enum(path|handle|loop|nbd|ploop|virtiofs) @format=str @name=str @wrpolicy=enum(immediate) @queue=uint @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
      binary @path=abspath @xattr=onoff
        cache @mode=enum(none|always)
        sandbox @mode=enum(namespace|chroot)
        lock @posix=onoff @flock=onoff
        thread_pool @size=uint
      source! @file=str @dev=str @dir=str @name=str @usage=uint @units=unit @socket=abspath @pool=str @volume=str
      target! @dir!=str
      readonly
      space_hard_limit &sized
      space_soft_limit &sized
      boot @order!=posint
    interface* @type!=enum(bridge|ethernet|vhostuser|direct|user|network|internal|mcast|client|udp|server|hostdev|vdpa|null|vds) @managed=yesno @trustGuestRxFilters=yesno
      &dev
      source @bridge=str @network=str @portgroup=str @portid=uuid @macTableManager=enum(kernel|libvirt) @dev=str @mode=str @name=str @address=str @port=str @type=str @path=str @switchid=uuid @portgroupid=str @connectionid=int
        local @address!=ipv4 @port!=port
        address @type!=enum(pci|usb) &pciaddr @bus=str @device=str
        reconnect &reconnect
        vendor @id!=str
        product @id!=str
      virtualport &virtualport
      link @state!=enum(up|down)
      mtu @size!=port
      coalesce
        rx
          frames @max=uint32
      target @dev!=devname @managed=yesno
      guest @dev=devname @actual=devname
      mac @address!=mac @type=enum(generated|static) @check=yesno
      ip* @address!=ip @family=re(ipv4|ipv6) @prefix=prefix @peer=ip
      route* @family=re(ipv4|ipv6) @address!=ip @netmask=ipv4 @prefix=prefix @gateway!=ip @metric=uint32
      portForward* @proto!=enum(tcp|udp) @address=ip @dev=devname
        range+ @start!=dnsport @end=dnsport @to=dnsport @exclude=yesno
      script @path!=str
      downscript @path!=str
      backenddomain @name!=name
      backend @type=enum(passt) @tap=abspath @vhost=abspath @logFile=abspath
      model @type!=modeltype
      driver @name=enum(kvm|vfio|xen|qemu|vhost) @txmode=enum(iothread|timer) @ioeventfd=onoff @event_idx=onoff @queues=posint @rx_queue_size=posint @tx_queue_size=posint @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff @rss=onoff @rss_hash_report=onoff
        host @csum=onoff @gso=onoff @tso4=onoff @tso6=onoff @ecn=onoff @ufo=onoff @mrg_rxbuf=onoff
        guest @csum=onoff @tso4=onoff @tso6=onoff @ecn=onoff @ufo=onoff
      filterref @filter!=str
        parameter* @name!=str @value!=str
      tune
        sndbuf :uint
      rom @enabled=yesno @bar=onoff @file=abspath
      boot @order!=posint @loadparm=str
      bandwidth &bandwidth
      vlan @trunk=enum(yes)
        tag+ @id!=uint32 @nativeMode=enum(tagged|untagged)
      port @isolated=yesno
      teaming @type!=enum(persistent|transient) @persistent=str
    input* @type!=enum(tablet|mouse|keyboard|passthrough|evdev) @bus=enum(ps2|usb|xen|virtio) @model=enum(virtio|virtio-transitional|virtio-non-transitional)
      &dev
      source @evdev=abspath @dev=abspath @grab=enum(all) @grabToggle=enum(ctrl-ctrl|alt-alt|shift-shift|meta-meta|scrolllock|ctrl-scrolllock) @repeat=onoff
      driver @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
    sound* @model!=enum(sb16|es1370|pcspk|ac97|ich6|ich7|ich9|usb|ich7)
      &dev
      audio @id!=h8
      codec* @type!=enum(duplex|micro|output)
    audio* @id!=h8 @type!=enum(none|alsa|coreaudio|dbus|jack|oss|pulseaudio|sdl|spice|file) @timerPeriod=h32 @tryMMap=yesno @exclusive=yesno @dspPolicy=int @serverName=str @driver=enum(esd|alsa|arts|pulseaudio) @path=str
      input @mixingEngine=yesno @fixedSettings=yesno @voices=h32 @bufferLength=h32 @dev=str @bufferCount=h32 @serverName=str @clientName=str @connectPorts=str @exactName=yesno @tryPoll=yesno @name=str @streamName=str @latency=h32
        settings @frequency=h32 @channels=h32 @format=enum(s8|u8|s16|u16|s32|u32|f32)
      output @mixingEngine=yesno @fixedSettings=yesno @voices=h32 @bufferLength=h32 @dev=str @bufferCount=h32 @serverName=str @clientName=str @connectPorts=str @exactName=yesno @tryPoll=yesno @name=str @streamName=str @latency=h32
        settings @frequency=h32 @channels=h32 @format=enum(s8|u8|s16|u16|s32|u32|f32)
    hostdev* @mode=enum(subsystem|capabilities) @type!=enum(usb|pci|scsi|scsi_host|mdev|storage|misc|net) @managed=yesno @model=enum(vfio-pci|vfio-ccw|vfio-ap|virtio|virtio-transitional|virtio-non-transitional) @sgio=enum(filtered|unfiltered) @rawio=yesno @display=onoff @ramfb=onoff
      &dev
      source! &usbsource
      driver @name=enum(kvm|vfio|xen)
      readonly
      shareable
      boot @order!=posint @loadparm=str
      rom @enabled=yesno @bar=onoff @file=abspath
      ip* @address!=ip @family=re(ipv4|ipv6) @prefix=prefix
      route* @family=re(ipv4|ipv6) @address!=ip @netmask=ipv4 @prefix=prefix @gateway!=ip @metric=uint32
      teaming @type!=enum(persistent|transient) @persistent=str
    graphics* @type!=enum(sdl|vnc|spice|rdp|desktop|egl-headless|dbus) @display=str @xauth=str @fullscreen=yesno @port=range(-1..65535) @autoport=yesno @websocket=range(-1..65535) @listen=str @sharePolicy=enum(allow-exclusive|force-shared|ignore) @powerControl=yesno @socket=abspath @passwd=str @keymap=str @passwdValidTo=str @connected=enum(fail|disconnect|keep) @tlsPort=range(-1..65535) @defaultMode=enum(any|secure|insecure) @multiUser=yesno @replaceUser=yesno @address=str @p2p=yesno
      gl @enable=yesno @rendernode=abspath
      listen* @type!=enum(address|network|socket|none) @address=str @network=str @socket=abspath
      channel* @name!=enum(main|display|inputs|cursor|playback|record|smartcard|usbredir) @mode!=enum(any|secure|insecure)
      image @compression!=enum(auto_glz|auto_lz|quic|glz|lz|off)
      jpeg @compression!=enum(auto|never|always)
      zlib @compression!=enum(auto|never|always)
      playback @compression!=onoff
      streaming @mode!=enum(filter|all|off)
      clipboard @copypaste!=yesno
      mouse @mode!=enum(server|client)
      filetransfer @enable!=yesno
      audio @id!=h8
    video*
      &dev
      model @type!=enum(vga|cirrus|vmvga|xen|vbox|virtio|gop|none|bochs|ramfb|qxl) @ram=uint @vram=uint @vram64=uint @vgamem=uint @heads=uint @primary=yesno
        acceleration @accel3d=yesno @accel2d=yesno @rendernode=abspath
        resolution @x!=uint @y!=uint
      driver @name=enum(qemu|vhostuser) @vgaconf=enum(io|on|off) @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
    console* &chardev
    parallel* &chardev
    serial* &chardev
    channel* &chardev
    smartcard* @mode!=enum(host|host-certificates|passthrough) @type=str
      address &address
      certificate* :str
      database :abspath
      source* @mode=str @path=str @host=str @service=str @channel=str @append=onoff
        reconnect &reconnect
      protocol @type=enum(raw|telnet|telnets|tls)
    hub* @type!=enum(usb)
      &devnoacpi
    redirdev* @bus!=enum(usb) @type!=enum(dev|file|pipe|unix|tcp|udp|null|stdio|vc|pty|spicevmc|spiceport|nmdm|qemu-vdagent|dbus)
      &devnoacpi
      source* @mode=str @path=str @host=str @service=str @channel=str @append=onoff
        reconnect &reconnect
      protocol @type=enum(raw|telnet|telnets|tls)
      boot @order!=posint
    redirfilter*
      usbdev* @allow!=yesno @class=str @vendor=str @product=str @version=str
    rng* @model!=enum(virtio|virtio-transitional|virtio-non-transitional)
      &dev
      rate @bytes!=posint @period=posint
      backend! @model!=enum(random|egd|builtin) @type=enum(dev|file|pipe|unix|tcp|udp|null|stdio|vc|pty|spicevmc|spiceport|nmdm|qemu-vdagent|dbus) :str
        source* @mode=str @path=str @host=str @service=str @channel=str @append=onoff
          reconnect &reconnect
        protocol @type=enum(raw|telnet|telnets|tls)
      driver @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
    tpm* @model=enum(tpm-tis|tpm-crb|tpm-spapr|spapr-tpm-proxy)
      &devnoacpi
      backend! @type!=enum(passthrough|emulator|external) @version=enum(1.2|2.0) @persistent_state=yesno
        device @path=str
        encryption @secret!=uuid
        active_pcr_banks
          sha1
          sha256
          sha384
          sha512
        source @type=enum(unix) @path=str @mode=enum(connect)
    shmem* @name!=str @role=enum(master|peer)
      &dev
      model @type!=enum(ivshmem|ivshmem-plain|ivshmem-doorbell)
      size &sized
      server @path=abspath
      msi @vectors=uint @ioeventfd=onoff
    memory* @model!=enum(dimm|nvdimm|virtio-pmem|virtio-mem|sgx-epc) @access=enum(shared|private) @discard=yesno
      &dev
      uuid :uuid
      source
        pagesize &sized
        nodemask :cpuset
        path :abspath
        alignsize &sized
        pmem
      target!
        size! &sized
        node :uint
        label
          size &sized
        block &sized
        requested &sized
        current &sized
        readonly
    iommu @model!=enum(intel|smmuv3|virtio)
      &dev
      driver @intremap=onoff @caching_mode=onoff @eim=onoff @iotlb=onoff @aw_bits=h8
    vsock @model=enum(virtio|virtio-transitional|virtio-non-transitional)
      &dev
      cid @auto=yesno @address=uint
      driver @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
    watchdog @model!=enum(i6300esb|ib700|diag288) @action=enum(reset|shutdown|poweroff|pause|none|dump|inject-nmi)
      &dev
    memballoon @model!=enum(virtio|virtio-transitional|virtio-non-transitional|xen|none) @autodeflate=onoff @freePageReporting=onoff
      &dev
      stats @period!=posint
      driver @iommu=onoff @ats=onoff @packed=onoff @page_per_vq=onoff
    nvram
      address &address
    panic* @model=enum(isa|pseries|hyperv|s390)
      &devnoacpi
  qemu:commandline
    qemu:arg* @value!=str
    qemu:env* @name!=re([a-zA-Z_][a-zA-Z0-9_]*) @value=str
  qemu:capabilities
    qemu:add* @capability!=str
    qemu:del* @capability!=str
  qemu:deprecation @behavior!=enum(none|omit|reject|crash)
  qemu:override
    qemu:device* @alias!=str
      qemu:frontend
        qemu:property* @name!=str @type!=enum(string|signed|unsigned|bool|remove) @value=str
  lxc:namespace
    lxc:sharenet @type!=enum(netns|name|pid) @value!=str
    lxc:shareipc @type!=enum(name|pid) @value!=str
    lxc:shareuts @type!=enum(name|pid) @value!=str
  bhyve:commandline
    bhyve:arg* @value!=str
  xen:commandline
    xen:arg* @value!=str
  vmware:datacenterpath :str
`
