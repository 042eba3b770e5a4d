package driver

import (
	"errors"
	"strconv"
	"strings"

	"vsh/domxml"
)

// Helpers both drivers use to read definitions the way libvirt does: the
// domxml parse functions with their errors as driver errors, and the small
// rules libvirt applies to every definition.

// XMLError turns a parse or validation error into a driver error, keeping
// the cause for errors.As. Errors that already carry a libvirt code pass
// through unchanged.
func XMLError(err error) error {
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	return &Error{Code: ErrXMLDetail, Detail: err.Error(), Err: err}
}

// ParseDomain parses a domain definition and fills in what libvirt
// generates (UUID, MAC addresses).
func ParseDomain(file string, data []byte, validate bool) (*domxml.Domain, error) {
	d, err := domxml.ParseDomain(file, data, validate)
	if err != nil {
		return nil, XMLError(err)
	}
	if _, err := d.FillDefaults(); err != nil {
		return nil, XMLError(err)
	}
	return d, nil
}

// ParseNetwork parses a network definition.
func ParseNetwork(file string, data []byte, validate bool) (*domxml.Network, error) {
	n, err := domxml.ParseNetwork(file, data, validate)
	if err != nil {
		return nil, XMLError(err)
	}
	return n, nil
}

// ParsePool parses a storage pool definition.
func ParsePool(file string, data []byte, validate bool) (*domxml.Pool, error) {
	p, err := domxml.ParsePool(file, data, validate)
	if err != nil {
		return nil, XMLError(err)
	}
	return p, nil
}

// ParseVolume parses a storage volume definition.
func ParseVolume(file string, data []byte, validate bool) (*domxml.Volume, error) {
	v, err := domxml.ParseVolume(file, data, validate)
	if err != nil {
		return nil, XMLError(err)
	}
	return v, nil
}

// VCPUs returns a definition's maximum and current vCPU counts.
func VCPUs(d *domxml.Domain) (maximum, current int) {
	maximum, current = int(d.VCPU.Count), int(d.VCPU.Current)
	if maximum == 0 {
		maximum = 1
	}
	if current == 0 || current > maximum {
		current = maximum
	}
	return maximum, current
}

// WithID returns a running domain's XML with the id attribute libvirt puts
// on the root element of a live definition.
func WithID(xml []byte, id int) []byte {
	s := string(xml)
	start := strings.Index(s, "<domain")
	if start < 0 {
		return xml
	}
	end := strings.IndexByte(s[start:], '>')
	if end < 0 {
		return xml
	}
	end += start
	if s[end-1] == '/' {
		end--
	}
	if strings.Contains(s[start:end], " id=") {
		return xml
	}
	return []byte(s[:end] + " id='" + strconv.Itoa(id) + "'" + s[end:])
}

// NormUUID returns a UUID in canonical lower-case hyphenated form, or ""
// when s is not a UUID (libvirt accepts hex digits with optional hyphens).
func NormUUID(s string) string {
	var hex []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			hex = append(hex, c)
		case c >= 'A' && c <= 'F':
			hex = append(hex, c+'a'-'A')
		default:
			return ""
		}
	}
	if len(hex) != 32 {
		return ""
	}
	h := string(hex)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
