package schema

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// A valueType checks attribute values and element text.
type valueType struct {
	desc string   // "an unsigned integer"
	enum []string // for enumerations: the allowed values
	ok   func(s string) bool
	raw  bool // do not trim whitespace before checking
}

func (t *valueType) check(s string) string {
	if !t.raw {
		s = strings.TrimSpace(s)
	}
	if t.enum != nil {
		for _, e := range t.enum {
			if s == e {
				return ""
			}
		}
		return "bad"
	}
	if t.ok(s) {
		return ""
	}
	return "bad"
}

// describe completes "attribute x of <e> ..." / "content of <e> ...".
func (t *valueType) describe(val, _ string) string {
	val = strings.TrimSpace(val)
	if t.enum != nil {
		msg := fmt.Sprintf("must be one of %s: got %q", strings.Join(t.enum, ", "), val)
		if s := suggest(val, t.enum); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return msg
	}
	return fmt.Sprintf("must be %s: got %q", t.desc, val)
}

func pattern(desc, re string) *valueType {
	r := regexp.MustCompile("^(?:" + re + ")$")
	return &valueType{desc: desc, ok: r.MatchString}
}

// charset is a type of non-empty strings of ASCII letters, digits and the
// given punctuation.
func charset(desc, punct string) *valueType {
	return &valueType{desc: desc, ok: func(s string) bool {
		if s == "" {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(punct, c) >= 0) {
				return false
			}
		}
		return true
	}}
}

func uintRange(lo, hi uint64) *valueType {
	return &valueType{
		desc: fmt.Sprintf("an integer from %d to %d", lo, hi),
		ok: func(s string) bool {
			if !allDigits(s) {
				return false
			}
			n, err := strconv.ParseUint(s, 10, 64)
			return err == nil && n >= lo && n <= hi
		},
	}
}

func intRange(lo, hi int64) *valueType {
	return &valueType{
		desc: fmt.Sprintf("an integer from %d to %d", lo, hi),
		ok: func(s string) bool {
			n, err := strconv.ParseInt(s, 10, 64)
			return err == nil && n >= lo && n <= hi && !strings.HasPrefix(s, "+")
		},
	}
}

// hexOrDec accepts 0x-prefixed hex with up to digits digits, or a decimal
// number up to max (libvirt's uint8/uint16/uint32 types).
func hexOrDec(max uint64, digits int, optional0x bool) *valueType {
	return &valueType{
		desc: fmt.Sprintf("a number from 0 to %d (decimal or 0x hex)", max),
		ok: func(s string) bool {
			h, has0x := strings.CutPrefix(s, "0x")
			if (has0x || optional0x) && len(h) >= 1 && len(h) <= digits && isHex(h) {
				return true
			}
			if !allDigits(s) {
				return false
			}
			n, err := strconv.ParseUint(s, 10, 64)
			return err == nil && n <= max
		},
	}
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4() && !strings.Contains(s, ":")
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6() && a.Zone() == ""
}

var cpusetRE = regexp.MustCompile(`^([0-9]+(-[0-9]+)?|\^[0-9]+)(,([0-9]+(-[0-9]+)?|\^[0-9]+))*$`)

// parseCPUSet parses libvirt's CPU set syntax ("0-3,^2,6") and returns the
// highest CPU it includes (-1 when none), or ok=false when it is malformed
// or a range runs backwards.
func parseCPUSet(s string) (highest int, ok bool) {
	if !cpusetRE.MatchString(s) {
		return -1, false
	}
	const limit = 1 << 16 // far above any host; keeps the set small
	in := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		if n, found := strings.CutPrefix(part, "^"); found {
			v, err := strconv.Atoi(n)
			if err != nil || v >= limit {
				return -1, false
			}
			delete(in, v)
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a || b >= limit {
			return -1, false
		}
		for v := a; v <= b; v++ {
			in[v] = true
		}
	}
	highest = -1
	for v := range in {
		highest = max(highest, v)
	}
	return highest, true
}

// namedTypes are the value types rule tables refer to by name.
var namedTypes = map[string]*valueType{
	"str":      {desc: "a string", ok: func(string) bool { return true }, raw: true},
	"nonempty": {desc: "a non-empty string", ok: func(s string) bool { return s != "" }},
	"uint":     {desc: "an unsigned integer", ok: func(s string) bool { _, err := strconv.ParseUint(s, 10, 64); return err == nil && allDigits(s) }},
	"uint32":   {desc: "an unsigned 32-bit integer", ok: func(s string) bool { _, err := strconv.ParseUint(s, 10, 32); return err == nil && allDigits(s) }},
	"int": {desc: "an integer", ok: func(s string) bool {
		_, err := strconv.ParseInt(s, 10, 64)
		return err == nil && !strings.HasPrefix(s, "+")
	}},
	"posint": {desc: "a positive integer", ok: func(s string) bool {
		n, err := strconv.ParseUint(s, 10, 64)
		return err == nil && allDigits(s) && n > 0
	}},
	"octal":     pattern("an octal mode such as 0755", `[0-7]+`),
	"hexuint":   pattern("a hex number such as 0x1f", `(0x)?[0-9a-f]+`),
	"h8":        hexOrDec(255, 2, false),
	"h16":       hexOrDec(65535, 4, true),
	"h24":       hexOrDec(16777215, 6, false),
	"h32":       hexOrDec(4294967295, 8, true),
	"pcislot":   pattern("a PCI slot number (0x00 to 0x1f)", `(0x)?[0-1]?[0-9a-fA-F]|[0-9]|[1-2][0-9]|3[0-1]`),
	"pcifunc":   pattern("a PCI function number (0x0 to 0x7)", `(0x)?[0-7]`),
	"uuid":      {desc: "a UUID (32 hex digits, optionally written 8-4-4-4-12)", ok: func(s string) bool { _, err := ParseUUID(s); return err == nil && !strings.ContainsAny(s, " \t") }},
	"mac":       {desc: "a unicast MAC address such as 52:54:00:12:34:56", ok: func(s string) bool { _, err := ParseMAC(s); return err == nil }},
	"anymac":    pattern("a MAC address such as 52:54:00:12:34:56", `([a-fA-F0-9]{2}:){5}[a-fA-F0-9]{2}`),
	"ipv4":      {desc: "an IPv4 address", ok: isIPv4},
	"ipv6":      {desc: "an IPv6 address", ok: isIPv6},
	"ip":        {desc: "an IPv4 or IPv6 address", ok: func(s string) bool { return isIPv4(s) || isIPv6(s) }},
	"prefix":    uintRange(0, 128),
	"prefix4":   uintRange(0, 32),
	"name":      {desc: "a non-empty name without newlines", ok: func(s string) bool { return s != "" && !strings.Contains(s, "\n") }, raw: true},
	"objname":   {desc: "a non-empty name without '/' or newlines", ok: func(s string) bool { return s != "" && !strings.ContainsAny(s, "/\n") }, raw: true},
	"volname":   {desc: "a file name other than . or .. and without '/'", ok: func(s string) bool { return s != "" && s != "." && s != ".." && !strings.Contains(s, "/") }, raw: true},
	"genname":   charset("a name of letters, digits, '_', '+' and '-'", "_+-"),
	"dnsname":   charset("a DNS name of letters, digits, '.' and '-'", ".-"),
	"devname":   charset("a device name of letters, digits and _.-\\:/", "_.-\\:/"),
	"alias":     charset("an alias of letters, digits, '_', '-' and '.'", "_-."),
	"modeltype": charset("a model name of letters, digits, '-' and '_'", "-_"),
	"diskdev":   pattern("a disk target such as vda, sdb or hdc", `(ioemu:)?(fd|hd|sd|vd|xvd|ubd)[a-zA-Z0-9_]+`),
	"path":      {desc: "a non-empty path", ok: func(s string) bool { return s != "" && !strings.Contains(s, "\n") }},
	"abspath": {desc: "an absolute path", ok: func(s string) bool {
		return len(s) > 1 && s[0] == '/' && !strings.Contains(s, "\n") || len(s) > 3 && s[1] == ':' && s[2] == '\\'
	}},
	"absdir":   {desc: "an absolute directory path", ok: func(s string) bool { return strings.HasPrefix(s, "/") && !strings.Contains(s, "\n") }},
	"yesno":    {desc: "yes or no", enum: []string{"yes", "no"}},
	"onoff":    {desc: "on or off", enum: []string{"on", "off"}},
	"cpuset":   {desc: "a CPU set such as 0-3,^2,6", ok: func(s string) bool { _, ok := parseCPUSet(s); return ok }},
	"unit":     {desc: "a size unit (b, bytes, KiB, KB, MiB, MB, GiB, GB, TiB, TB, PiB, PB, EiB, EB)", ok: func(s string) bool { return validUnit(s) && s != "" }},
	"wwn":      pattern("a WWN of 16 hex digits", `(0x)?[0-9a-fA-F]{16}`),
	"port":     uintRange(0, 65535),
	"dnsport":  uintRange(1, 65535),
	"arch":     {enum: []string{"aarch64", "alpha", "armv6l", "armv7l", "cris", "i686", "ia64", "lm32", "m68k", "microblaze", "microblazeel", "mips", "mipsel", "mips64", "mips64el", "openrisc", "parisc", "parisc64", "ppc", "ppc64", "ppc64le", "ppcemb", "riscv32", "riscv64", "s390", "s390x", "sh4", "sh4eb", "sparc", "sparc64", "unicore32", "x86_64", "xtensa", "xtensaeb"}},
	"numadist": uintRange(10, 255),
}

// lookupType resolves a type token of a rule table: a named type,
// enum(a|b|c), range(lo..hi) or re(regexp).
func lookupType(tok string) (*valueType, error) {
	if t, ok := namedTypes[tok]; ok {
		return t, nil
	}
	switch {
	case strings.HasPrefix(tok, "enum(") && strings.HasSuffix(tok, ")"):
		vals := strings.Split(tok[5:len(tok)-1], "|")
		return &valueType{enum: vals}, nil
	case strings.HasPrefix(tok, "range(") && strings.HasSuffix(tok, ")"):
		lo, hi, ok := strings.Cut(tok[6:len(tok)-1], "..")
		if !ok {
			return nil, fmt.Errorf("bad range %q", tok)
		}
		l, err1 := strconv.ParseInt(lo, 10, 64)
		h, err2 := strconv.ParseInt(hi, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad range %q", tok)
		}
		if l >= 0 {
			return uintRange(uint64(l), uint64(h)), nil
		}
		return intRange(l, h), nil
	case strings.HasPrefix(tok, "re(") && strings.HasSuffix(tok, ")"):
		re, err := regexp.Compile("^(?:" + tok[3:len(tok)-1] + ")$")
		if err != nil {
			return nil, err
		}
		return &valueType{desc: "a value matching " + tok[3:len(tok)-1], ok: re.MatchString}, nil
	}
	return nil, fmt.Errorf("unknown type %q", tok)
}
