package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBadKernel is wrapped by every error about a kernel image that is
// truncated, corrupt or of an unsupported kind.
var ErrBadKernel = errors.New("bad kernel image")

// Setup header offsets, into the bzImage file and into boot_params alike
// (Documentation/arch/x86/boot.rst).
const (
	hdrStart            = 0x1f1
	offSetupSects       = 0x1f1
	offVidMode          = 0x1fa
	offBootFlag         = 0x1fe
	offHeader           = 0x202
	offVersion          = 0x206
	offTypeOfLoader     = 0x210
	offLoadflags        = 0x211
	offCode32Start      = 0x214
	offRamdiskImage     = 0x218
	offRamdiskSize      = 0x21c
	offHeapEndPtr       = 0x224
	offCmdLinePtr       = 0x228
	offInitrdAddrMax    = 0x22c
	offKernelAlignment  = 0x230
	offRelocatable      = 0x234
	offMinAlignment     = 0x235
	offXLoadflags       = 0x236
	offCmdlineSize      = 0x238
	offPayloadOffset    = 0x248
	offPayloadLength    = 0x24c
	offPrefAddress      = 0x258
	offInitSize         = 0x260
	hdrEnd              = 0x268 // end of the fields this package reads
	bootFlagMagic       = 0xaa55
	headerMagic         = 0x53726448 // "HdrS"
	minProtocol         = 0x020c     // 2.12: xloadflags and the 64-bit entry
	loadedHigh          = 0x01
	canUseHeap          = 0x80
	xlfKernel64         = 0x01
	xlfCanBeLoadedAbove = 0x02
	entry64Offset       = 0x200
)

// SetupHeader holds the bzImage setup header fields the loader needs.
type SetupHeader struct {
	SetupSects      uint8
	Version         uint16 // boot protocol, e.g. 0x020f
	Loadflags       uint8
	InitrdAddrMax   uint32
	KernelAlignment uint32
	Relocatable     bool
	XLoadflags      uint16
	CmdlineSize     uint32
	PrefAddress     uint64
	InitSize        uint32
	// Raw is the header as found in the file, [0x1f1, end of header), to
	// be copied into the zero page.
	Raw []byte
}

// BzImage is a parsed bzImage: its setup header and the protected-mode
// kernel that is loaded into guest memory.
type BzImage struct {
	Header SetupHeader
	// Kernel is the protected-mode part of the file (it aliases the input).
	Kernel []byte
}

// ParseBzImage checks that data is a bzImage this loader can enter in 64-bit
// mode (boot protocol 2.12 or later, XLF_KERNEL_64, loaded high) and returns
// its header and protected-mode kernel. Every failure wraps ErrBadKernel.
func ParseBzImage(data []byte) (*BzImage, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("bzImage: %s: %w", fmt.Sprintf(format, args...), ErrBadKernel)
	}
	if len(data) < hdrEnd {
		return nil, bad("file is %d bytes, shorter than the setup header", len(data))
	}
	le := binary.LittleEndian
	if le.Uint16(data[offBootFlag:]) != bootFlagMagic {
		return nil, bad("no boot sector signature 0xaa55 at 0x1fe")
	}
	if le.Uint32(data[offHeader:]) != headerMagic {
		return nil, bad(`no "HdrS" setup header magic at 0x202`)
	}
	h := SetupHeader{
		SetupSects:      data[offSetupSects],
		Version:         le.Uint16(data[offVersion:]),
		Loadflags:       data[offLoadflags],
		InitrdAddrMax:   le.Uint32(data[offInitrdAddrMax:]),
		KernelAlignment: le.Uint32(data[offKernelAlignment:]),
		Relocatable:     data[offRelocatable] != 0,
		XLoadflags:      le.Uint16(data[offXLoadflags:]),
		CmdlineSize:     le.Uint32(data[offCmdlineSize:]),
		PrefAddress:     le.Uint64(data[offPrefAddress:]),
		InitSize:        le.Uint32(data[offInitSize:]),
	}
	if h.Version < minProtocol {
		return nil, bad("boot protocol %d.%02d is older than 2.12 (no 64-bit entry)", h.Version>>8, h.Version&0xff)
	}
	if h.Loadflags&loadedHigh == 0 {
		return nil, bad("kernel is not loaded high (zImage); only bzImage is supported")
	}
	if h.XLoadflags&xlfKernel64 == 0 {
		return nil, bad("XLF_KERNEL_64 is not set: the kernel has no 64-bit entry point")
	}
	// The header's own length: byte 0x201 is the signed displacement of
	// the short jump at 0x200, which lands just past the header.
	hdrLen := 0x202 + int(int8(data[0x201])) - hdrStart
	if hdrLen < hdrEnd-hdrStart {
		hdrLen = hdrEnd - hdrStart
	}
	if hdrStart+hdrLen > len(data) || hdrStart+hdrLen > ZeroPageSize {
		return nil, bad("setup header of %d bytes runs past the file or the zero page", hdrLen)
	}
	setupSects := int(h.SetupSects)
	if setupSects == 0 {
		setupSects = 4
	}
	kernelOff := (setupSects + 1) * 512
	if kernelOff >= len(data) {
		return nil, bad("setup code (%d sectors) leaves no protected-mode kernel in a %d-byte file", setupSects, len(data))
	}
	if h.InitSize == 0 {
		return nil, bad("init_size is zero")
	}
	kernel := data[kernelOff:]
	if uint64(len(kernel)) > uint64(h.InitSize) {
		return nil, bad("protected-mode kernel (%d bytes) is larger than init_size (%d)", len(kernel), h.InitSize)
	}
	if h.KernelAlignment != 0 && h.KernelAlignment&(h.KernelAlignment-1) != 0 {
		return nil, bad("kernel_alignment %#x is not a power of two", h.KernelAlignment)
	}
	h.Raw = data[hdrStart : hdrStart+hdrLen]
	return &BzImage{Header: h, Kernel: kernel}, nil
}

// loadAddress returns where the protected-mode kernel goes: pref_address
// when set (a non-relocatable kernel requires it, a relocatable one then
// skips moving itself), else 1 MiB.
func (b *BzImage) loadAddress() (uint64, error) {
	addr := b.Header.PrefAddress
	if addr == 0 {
		addr = DefaultLoad
	}
	if addr < HighMemStart {
		return 0, fmt.Errorf("bzImage: pref_address %#x is below 1 MiB: %w", addr, ErrBadKernel)
	}
	if !b.Header.Relocatable && b.Header.PrefAddress == 0 {
		return DefaultLoad, nil
	}
	return addr, nil
}
