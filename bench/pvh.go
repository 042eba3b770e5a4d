package main

import (
	"encoding/binary"

	"vsh/guest/payload"
)

// QEMU loads an uncompressed ELF kernel only through the PVH boot
// protocol (an XEN_ELFNOTE_PHYS32_ENTRY note, entered in 32-bit protected
// mode with paging off), while vsh's payload is entered in 64-bit mode
// with the Linux zero page. pvhPayload is the peer's equivalent of the
// payload's idle mode for QEMU: the same marker written to COM1 with one
// `rep outsb`, then cli; hlt forever.

const (
	pvhLoadAddr   = 0x100000
	pvhCodeOffset = 0x100
	xenNotePVH    = 18 // XEN_ELFNOTE_PHYS32_ENTRY
)

// pvhPayload returns the ELF64 image.
func pvhPayload() []byte {
	marker := []byte(payload.ReadyMarker + "\r\n")
	codeLen := 4 + 5 + 5 + 1 + 2 + 1 + 1 + 2
	markerAddr := uint32(pvhLoadAddr + pvhCodeOffset + codeLen)
	var code []byte
	code = append(code, 0x66, 0xba, 0xf8, 0x03) // mov dx, 0x3f8
	code = append(code, 0xbe)                   // mov esi, marker
	code = binary.LittleEndian.AppendUint32(code, markerAddr)
	code = append(code, 0xb9) // mov ecx, len(marker)
	code = binary.LittleEndian.AppendUint32(code, uint32(len(marker)))
	code = append(code, 0xfc)       // cld
	code = append(code, 0xf3, 0x6e) // rep outsb
	code = append(code, 0xfa)       // cli
	code = append(code, 0xf4)       // hlt
	code = append(code, 0xeb, 0xfd) // jmp hlt
	img := make([]byte, pvhCodeOffset)
	img = append(img, code...)
	img = append(img, marker...)

	le := binary.LittleEndian
	// ELF header.
	copy(img, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(img[16:], 2)    // ET_EXEC
	le.PutUint16(img[18:], 0x3e) // EM_X86_64
	le.PutUint32(img[20:], 1)
	le.PutUint64(img[24:], pvhLoadAddr+pvhCodeOffset) // e_entry
	le.PutUint64(img[32:], 64)                        // e_phoff
	le.PutUint16(img[52:], 64)                        // e_ehsize
	le.PutUint16(img[54:], 56)                        // e_phentsize
	le.PutUint16(img[56:], 2)                         // e_phnum
	// PT_LOAD: the whole file at 1 MiB, RWX.
	ph := img[64:]
	le.PutUint32(ph[0:], 1)
	le.PutUint32(ph[4:], 7)
	le.PutUint64(ph[8:], 0)
	le.PutUint64(ph[16:], pvhLoadAddr)
	le.PutUint64(ph[24:], pvhLoadAddr)
	le.PutUint64(ph[32:], uint64(len(img)))
	le.PutUint64(ph[40:], uint64(len(img)))
	le.PutUint64(ph[48:], 0x1000)
	// PT_NOTE: "Xen" note with the 32-bit entry point (8-byte desc, as
	// Linux writes it and QEMU reads it).
	const noteOff, noteLen = 176, 12 + 4 + 8
	ph = img[64+56:]
	le.PutUint32(ph[0:], 4)
	le.PutUint32(ph[4:], 4)
	le.PutUint64(ph[8:], noteOff)
	le.PutUint64(ph[16:], pvhLoadAddr+noteOff)
	le.PutUint64(ph[24:], pvhLoadAddr+noteOff)
	le.PutUint64(ph[32:], noteLen)
	le.PutUint64(ph[40:], noteLen)
	le.PutUint64(ph[48:], 4)
	n := img[noteOff:]
	le.PutUint32(n[0:], 4) // namesz
	le.PutUint32(n[4:], 8) // descsz
	le.PutUint32(n[8:], xenNotePVH)
	copy(n[12:], "Xen\x00")
	le.PutUint64(n[16:], pvhLoadAddr+pvhCodeOffset)
	return img
}
