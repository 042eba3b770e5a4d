package network

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nftFile is the ruleset file Start writes to the run directory; it stays
// there so an administrator can read what is loaded.
const nftFile = "nftables.conf"

// TableName is the nftables table (family inet, so IPv6 is confined too)
// holding a network's rules:
// vsh-<name>, with characters nft does not accept in a name replaced and a
// hash of the real name appended when that happened, so two networks never
// share a table.
func TableName(network string) string {
	var b strings.Builder
	b.WriteString("vsh-")
	clean := true
	for _, r := range network {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
			clean = false
		}
	}
	if !clean || b.Len() > 200 {
		h := fnv.New32a()
		h.Write([]byte(network))
		s := b.String()
		if len(s) > 200 {
			s = s[:200]
		}
		return fmt.Sprintf("%s-%08x", s, h.Sum32())
	}
	return b.String()
}

// ruleset is what Start loads for one network.
type ruleset struct {
	table   string
	mode    string       // nat, route, "" (isolated)
	bridge  string       // the network's bridge
	subnets []*net.IPNet // the network's subnets, IPv4 and IPv6
	dev     string       // <forward dev=>: only forward through this device
}

// family is the nft match keyword for a subnet's addresses.
func family(s *net.IPNet) string {
	if s.IP.To4() != nil {
		return "ip"
	}
	return "ip6"
}

// render returns the nft script. It first creates and deletes the table so
// loading it replaces leftovers of an earlier run instead of failing; nft
// applies a file atomically.
func (r ruleset) render() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# vsh: rules of one virtual network; removed by net-destroy\n")
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", r.table, r.table)
	fmt.Fprintf(&b, "table inet %s {\n", r.table)
	br := quote(r.bridge)
	out := ""
	if r.dev != "" {
		out = " oifname " + quote(r.dev)
	}
	in := ""
	if r.dev != "" {
		in = " iifname " + quote(r.dev)
	}
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\tiifname %s oifname %s accept\n", br, br)
	for _, sub := range r.subnets {
		s, fam := sub.String(), family(sub)
		switch {
		case r.mode == "nat" && fam == "ip":
			fmt.Fprintf(&b, "\t\tiifname %s%s ip saddr %s accept\n", br, out, s)
			fmt.Fprintf(&b, "\t\toifname %s%s ip daddr %s ct state related,established accept\n", br, in, s)
		case r.mode == "nat" || r.mode == "route":
			// IPv6 is routed, never NATed, in a NAT network (as libvirt).
			fmt.Fprintf(&b, "\t\tiifname %s%s %s saddr %s accept\n", br, out, fam, s)
			fmt.Fprintf(&b, "\t\toifname %s%s %s daddr %s accept\n", br, in, fam, s)
		}
	}
	// Anything else crossing the bridge is refused, as libvirt does; an
	// isolated network only ever gets these two.
	fmt.Fprintf(&b, "\t\tiifname %s reject\n", br)
	fmt.Fprintf(&b, "\t\toifname %s reject\n", br)
	b.WriteString("\t}\n")
	var v4 []*net.IPNet
	for _, sub := range r.subnets {
		if family(sub) == "ip" {
			v4 = append(v4, sub)
		}
	}
	if r.mode == "nat" && len(v4) > 0 {
		b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		for _, sub := range v4 {
			s := sub.String()
			// Multicast and broadcast must keep their source, as in libvirt.
			fmt.Fprintf(&b, "\t\tip saddr %s ip daddr 224.0.0.0/24 return\n", s)
			fmt.Fprintf(&b, "\t\tip saddr %s ip daddr 255.255.255.255 return\n", s)
			fmt.Fprintf(&b, "\t\tip saddr %s ip daddr != %s%s meta l4proto { tcp, udp } masquerade to :1024-65535\n", s, s, out)
			fmt.Fprintf(&b, "\t\tip saddr %s ip daddr != %s%s masquerade\n", s, s, out)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func quote(s string) string { return `"` + s + `"` }

// nftPath finds nft (Debian's nftables package).
func nftPath() (string, error) {
	p, err := exec.LookPath("nft")
	if err != nil {
		for _, c := range []string{"/usr/sbin/nft", "/sbin/nft"} {
			if _, e := os.Stat(c); e == nil {
				return c, nil
			}
		}
		return "", fmt.Errorf("nft not found (apt-get install nftables): %w", err)
	}
	return p, nil
}

// loadRules writes the ruleset to runDir and loads it.
func loadRules(r ruleset, runDir string) error {
	nft, err := nftPath()
	if err != nil {
		return err
	}
	file := filepath.Join(runDir, nftFile)
	if err := os.WriteFile(file, []byte(r.render()), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(nft, "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("loading %s: nft: %v: %s", file, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// deleteTable removes a network's table; a table that is not there is not
// an error.
func deleteTable(table string) error {
	nft, err := nftPath()
	if err != nil {
		return err
	}
	if out, err := exec.Command(nft, "list", "table", "inet", table).CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("No such file")) {
			return nil
		}
		return fmt.Errorf("nft list table inet %s: %v: %s", table, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command(nft, "delete", "table", "inet", table).CombinedOutput(); err != nil {
		return fmt.Errorf("nft delete table inet %s: %v: %s", table, err, strings.TrimSpace(string(out)))
	}
	return nil
}
