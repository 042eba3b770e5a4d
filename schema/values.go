package schema

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// ParseScaled parses a scaled integer the way libvirt's virScaleInteger
// does: value is a non-negative decimal integer (no sign, no fraction) and
// unit one of b, byte, bytes (1), k or KiB (1024), KB (1000), M/MiB, MB,
// G/GiB, GB, T/TiB, TB, P/PiB, PB, E/EiB, EB, compared case-insensitively.
// An empty unit means defaultUnit. The result is in bytes; a result above
// limit (0 means no limit) or one that overflows is an error.
func ParseScaled(value, unit, defaultUnit string, limit uint64) (uint64, error) {
	if limit == 0 {
		limit = math.MaxUint64
	}
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, fmt.Errorf("missing value")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid value %q: expected a non-negative integer", value)
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %s is too large", v)
	}
	if unit == "" {
		unit = defaultUnit
	}
	scale, err := unitScale(unit)
	if err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(n, scale)
	if hi != 0 || lo > limit {
		return 0, fmt.Errorf("value too large: %s%s (limit %d bytes)", v, unit, limit)
	}
	return lo, nil
}

// unitScale returns the multiplier of a libvirt size unit.
func unitScale(unit string) (uint64, error) {
	u := strings.ToLower(unit)
	switch u {
	case "", "b", "byte", "bytes":
		return 1, nil
	}
	var base uint64
	switch rest := u[1:]; rest {
	case "", "ib":
		base = 1024
	case "b":
		base = 1000
	default:
		return 0, fmt.Errorf("unknown unit %q: expected one of b, bytes, KiB, KB, MiB, MB, GiB, GB, TiB, TB, PiB, PB, EiB, EB", unit)
	}
	pow := strings.IndexByte("kmgtpe", u[0])
	if pow < 0 {
		return 0, fmt.Errorf("unknown unit %q: expected one of b, bytes, KiB, KB, MiB, MB, GiB, GB, TiB, TB, PiB, PB, EiB, EB", unit)
	}
	scale := uint64(1)
	for range pow + 1 {
		scale *= base
	}
	return scale, nil
}

// validUnit reports whether unit is a size unit libvirt's schema accepts.
func validUnit(unit string) bool {
	_, err := unitScale(unit)
	return err == nil
}

// ParseUUID parses a UUID written as 32 hex digits, with or without the
// dashes of the 8-4-4-4-12 form (libvirt also tolerates dashes between any
// byte pairs and surrounding spaces; we accept exactly those two forms).
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	t := strings.TrimSpace(s)
	switch len(t) {
	case 32:
	case 36:
		if t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
			return u, fmt.Errorf("malformed UUID %q: expected 32 hex digits, optionally as 8-4-4-4-12", s)
		}
		t = t[:8] + t[9:13] + t[14:18] + t[19:23] + t[24:]
	default:
		return u, fmt.Errorf("malformed UUID %q: expected 32 hex digits, optionally as 8-4-4-4-12", s)
	}
	if _, err := hex.Decode(u[:], []byte(t)); err != nil {
		return u, fmt.Errorf("malformed UUID %q: expected 32 hex digits, optionally as 8-4-4-4-12", s)
	}
	return u, nil
}

// FormatUUID formats u in the canonical lowercase 8-4-4-4-12 form.
func FormatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ParseMAC parses a MAC address of six colon-separated hex octets
// ("52:54:00:12:34:56"). Multicast addresses (low bit of the first octet
// set) are rejected, as libvirt does for guest interfaces.
func ParseMAC(s string) ([6]byte, error) {
	var m [6]byte
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return m, fmt.Errorf("malformed MAC address %q: expected six hex octets separated by ':'", s)
	}
	for i, p := range parts {
		if len(p) != 2 {
			return m, fmt.Errorf("malformed MAC address %q: expected six hex octets separated by ':'", s)
		}
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return m, fmt.Errorf("malformed MAC address %q: expected six hex octets separated by ':'", s)
		}
		m[i] = byte(v)
	}
	if m[0]&1 != 0 {
		return m, fmt.Errorf("MAC address %q is a multicast address", s)
	}
	return m, nil
}
