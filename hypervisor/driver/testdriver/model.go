package testdriver

import (
	"errors"
	"strconv"
	"strings"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// This file is the only place that touches the domxml model API, so a
// change of names there is a change here only.

// xmlError turns a parse or validation error into a driver error, keeping
// the cause for errors.As. Errors that already carry a libvirt code pass
// through unchanged.
func xmlError(err error) error {
	var de *driver.Error
	if errors.As(err, &de) {
		return err
	}
	return &driver.Error{Code: driver.ErrXMLDetail, Detail: err.Error(), Err: err}
}

func parseDomain(file string, data []byte, validate bool) (*domxml.Domain, error) {
	d, err := domxml.ParseDomain(file, data, validate)
	if err != nil {
		return nil, xmlError(err)
	}
	if _, err := d.FillDefaults(); err != nil {
		return nil, xmlError(err)
	}
	return d, nil
}

func parseNetwork(file string, data []byte, validate bool) (*domxml.Network, error) {
	n, err := domxml.ParseNetwork(file, data, validate)
	if err != nil {
		return nil, xmlError(err)
	}
	return n, nil
}

func parsePool(file string, data []byte, validate bool) (*domxml.Pool, error) {
	p, err := domxml.ParsePool(file, data, validate)
	if err != nil {
		return nil, xmlError(err)
	}
	return p, nil
}

func parseVolume(file string, data []byte, validate bool) (*domxml.Volume, error) {
	v, err := domxml.ParseVolume(file, data, validate)
	if err != nil {
		return nil, xmlError(err)
	}
	return v, nil
}

// vcpus returns a definition's maximum and current vCPU counts.
func vcpus(d *domxml.Domain) (maximum, current int) {
	maximum, current = int(d.VCPU.Count), int(d.VCPU.Current)
	if maximum == 0 {
		maximum = 1
	}
	if current == 0 || current > maximum {
		current = maximum
	}
	return maximum, current
}

// withID returns a running domain's XML with the id attribute libvirt puts
// on the root element of a live definition.
func withID(xml []byte, id int) []byte {
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

// normUUID returns a UUID in canonical lower-case hyphenated form, or ""
// when s is not a UUID (libvirt accepts hex digits with optional hyphens).
func normUUID(s string) string {
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

// withNetworkUUID gives a network definition without a UUID a generated
// one, as libvirt's test driver does; unlike the local driver it assigns
// no bridge name or MAC. The UUID goes right after <name>, in the file's
// own layout.
func withNetworkUUID(n *domxml.Network, file string, data []byte) (*domxml.Network, error) {
	if n.UUID != "" {
		return n, nil
	}
	s := string(data)
	i := strings.Index(s, "</name>")
	if i < 0 {
		return n, nil
	}
	i += len("</name>")
	indent := "\n  "
	if j := strings.LastIndex(s[:i], "\n"); j >= 0 {
		k := j + 1
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		indent = "\n" + s[j+1:k]
	}
	out, err := domxml.ParseNetwork(file, []byte(s[:i]+indent+"<uuid>"+domxml.NewUUID()+"</uuid>"+s[i:]), false)
	if err != nil {
		return nil, xmlError(err)
	}
	return out, nil
}

// fillPool gives a pool definition its generated defaults (UUID).
func fillPool(p *domxml.Pool) error {
	if _, err := p.FillDefaults(); err != nil {
		return xmlError(err)
	}
	return nil
}
