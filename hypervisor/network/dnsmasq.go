package network

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vsh/domxml"
	"vsh/hypervisor/driver"
)

// Files of a network's dnsmasq in its run directory.
const (
	dnsmasqConf   = "dnsmasq.conf"
	dnsmasqPid    = "dnsmasq.pid"
	dnsmasqLeases = "dnsmasq.leases"
)

// dnsmasqPath finds dnsmasq (Debian's dnsmasq-base).
func dnsmasqPath() (string, error) {
	p, err := exec.LookPath("dnsmasq")
	if err != nil {
		for _, c := range []string{"/usr/sbin/dnsmasq", "/sbin/dnsmasq"} {
			if _, e := os.Stat(c); e == nil {
				return c, nil
			}
		}
		return "", fmt.Errorf("dnsmasq not found (apt-get install dnsmasq-base): %w", err)
	}
	return p, nil
}

// dnsmasqConfig generates a network's dnsmasq configuration, as libvirt
// does: bound to the bridge only, DHCP ranges and static hosts from the
// XML, <dns><host> records, and the lease file in the run directory.
// Static hosts and DNS records are in the one file dnsmasq reads as root:
// it runs as nobody afterwards and could not read more files in the
// root-only run directory.
func dnsmasqConfig(n *domxml.Network, bridge, runDir string) (string, error) {
	var conf, hosts bytes.Buffer
	fmt.Fprintf(&conf, "# vsh: dnsmasq of network %s; do not edit, net-start rewrites it\n", n.Name)
	conf.WriteString("strict-order\n")
	fmt.Fprintf(&conf, "pid-file=%s\n", filepath.Join(runDir, dnsmasqPid))
	conf.WriteString("except-interface=lo\nbind-interfaces\n")
	fmt.Fprintf(&conf, "interface=%s\n", bridge)
	// dnsmasq opens its lease, pid and hosts files as root and then runs
	// as nobody (its default), as libvirt's runs unprivileged.
	conf.WriteString("no-hosts\n")
	// Plain names are answered here or not at all, never sent upstream.
	conf.WriteString("domain-needed\n")
	if n.Domain != "" {
		if !validDNSName(n.Domain) {
			return "", fmt.Errorf("network '%s': bad domain name %q", n.Name, n.Domain)
		}
		fmt.Fprintf(&conf, "domain=%s\nlocal=/%s/\nexpand-hosts\n", n.Domain, n.Domain)
	}
	if len(n.DNS.Forwarders) > 0 {
		conf.WriteString("no-resolv\n")
		for _, f := range n.DNS.Forwarders {
			if net.ParseIP(f) == nil {
				return "", fmt.Errorf("network '%s': bad DNS forwarder address %q", n.Name, f)
			}
			fmt.Fprintf(&conf, "server=%s\n", f)
		}
	}
	leaseMax := 0
	ipv6 := false
	for _, ip := range n.IPs {
		sub, err := ip.Net()
		if err != nil {
			return "", fmt.Errorf("network '%s': %w", n.Name, err)
		}
		v6 := sub.IP.To4() == nil
		for _, r := range ip.DHCPRanges {
			start, end := net.ParseIP(r.Start), net.ParseIP(r.End)
			if start == nil || end == nil || !sub.Contains(start) || !sub.Contains(end) {
				return "", fmt.Errorf("network '%s': DHCP range %s - %s is not inside %s", n.Name, r.Start, r.End, sub)
			}
			if v6 {
				ones, _ := sub.Mask.Size()
				fmt.Fprintf(&conf, "dhcp-range=%s,%s,%d\n", r.Start, r.End, ones)
				ipv6 = true
			} else {
				fmt.Fprintf(&conf, "dhcp-range=%s,%s,%s\n", r.Start, r.End, net.IP(sub.Mask))
				if c := rangeSize(start.To4(), end.To4()); c > 0 {
					leaseMax += c
				}
			}
		}
		for _, h := range ip.DHCPHosts {
			var f []string
			if h.MAC != "" {
				hw, err := net.ParseMAC(h.MAC)
				if err != nil {
					return "", fmt.Errorf("network '%s': DHCP host: bad MAC %q", n.Name, h.MAC)
				}
				f = append(f, hw.String())
			}
			if h.IP != "" {
				a := net.ParseIP(h.IP)
				if a == nil || !sub.Contains(a) {
					return "", fmt.Errorf("network '%s': DHCP host address %q is not inside %s", n.Name, h.IP, sub)
				}
				if v6 {
					f = append(f, "["+h.IP+"]")
				} else {
					f = append(f, h.IP)
				}
			}
			if h.Name != "" {
				if !validDNSName(h.Name) {
					return "", fmt.Errorf("network '%s': bad DHCP host name %q", n.Name, h.Name)
				}
				f = append(f, h.Name)
			}
			if len(f) > 0 {
				hosts.WriteString("dhcp-host=" + strings.Join(f, ",") + "\n")
			}
		}
	}
	if leaseMax > 0 || ipv6 {
		conf.WriteString("dhcp-no-override\ndhcp-authoritative\n")
		if leaseMax > 0 {
			fmt.Fprintf(&conf, "dhcp-lease-max=%d\n", leaseMax)
		}
		fmt.Fprintf(&conf, "dhcp-leasefile=%s\n", filepath.Join(runDir, dnsmasqLeases))
	}
	conf.Write(hosts.Bytes())
	if ipv6 {
		conf.WriteString("enable-ra\n")
	}
	for _, h := range n.DNS.Hosts {
		if net.ParseIP(h.IP) == nil || len(h.Hostnames) == 0 {
			return "", fmt.Errorf("network '%s': <dns><host ip='%s'> needs a valid IP and a hostname", n.Name, h.IP)
		}
		for _, name := range h.Hostnames {
			if !validDNSName(name) {
				return "", fmt.Errorf("network '%s': bad DNS hostname %q", n.Name, name)
			}
		}
		fmt.Fprintf(&conf, "host-record=%s,%s\n", strings.Join(h.Hostnames, ","), h.IP)
	}
	if s := conf.String(); strings.ContainsAny(s, "\x00\r") {
		return "", fmt.Errorf("network '%s': control characters in DHCP/DNS settings", n.Name)
	}
	return conf.String(), nil
}

// validDNSName accepts host and domain names (letters, digits, '-', '_'
// and dots), which is also what keeps them from carrying anything else
// into dnsmasq's configuration.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

// rangeSize counts the addresses from start to end inclusive (IPv4).
func rangeSize(start, end net.IP) int {
	if start == nil || end == nil {
		return 0
	}
	s := uint32(start[0])<<24 | uint32(start[1])<<16 | uint32(start[2])<<8 | uint32(start[3])
	e := uint32(end[0])<<24 | uint32(end[1])<<16 | uint32(end[2])<<8 | uint32(end[3])
	if e < s {
		return 0
	}
	return int(min(e-s+1, 1<<24))
}

// startDnsmasq writes the configuration and starts the daemon. dnsmasq
// forks itself; its parent exits once the daemon is serving, or with the
// reason it could not.
func startDnsmasq(config string, runDir string) error {
	bin, err := dnsmasqPath()
	if err != nil {
		return err
	}
	conf := filepath.Join(runDir, dnsmasqConf)
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		return err
	}
	// Output goes to a file, not a pipe: the daemon could keep a pipe
	// open and make Wait hang.
	logPath := filepath.Join(runDir, "dnsmasq.start.log")
	log, err := os.OpenFile(logPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(logPath)
	defer log.Close()
	cmd := exec.Command(bin, "--conf-file="+conf)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("starting dnsmasq: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The daemon writes its pid file as it starts; give it a moment.
	for i := 0; ; i++ {
		_, err := dnsmasqPID(runDir)
		if err == nil {
			return nil
		}
		if i == 200 {
			return fmt.Errorf("starting dnsmasq: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dnsmasqPID returns the pid of the network's dnsmasq from its pid file,
// checking that the process is the dnsmasq started with this run
// directory's configuration (so a recycled pid is never signalled).
func dnsmasqPID(runDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(runDir, dnsmasqPid))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("bad pid file %s", filepath.Join(runDir, dnsmasqPid))
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, fmt.Errorf("dnsmasq %d: %w", pid, os.ErrNotExist)
	}
	if !bytes.Contains(cmdline, []byte("--conf-file="+filepath.Join(runDir, dnsmasqConf)+"\x00")) {
		return 0, fmt.Errorf("process %d is not this network's dnsmasq: %w", pid, os.ErrNotExist)
	}
	return pid, nil
}

// stopDnsmasq terminates the network's dnsmasq, if it runs, and waits for
// it to exit.
func stopDnsmasq(runDir string) error {
	pid, err := dnsmasqPID(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stopping dnsmasq %d: %w", pid, err)
	}
	for i := 0; i < 500; i++ {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
		if i == 300 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return fmt.Errorf("dnsmasq %d did not exit", pid)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// parseLeases reads a dnsmasq lease file: IPv4 lines "expiry mac ip
// hostname clientid", then after a "duid" line IPv6 lines "expiry iaid ip
// hostname duid". "*" means none; expiry 0 means infinite. prefix gives
// the prefix length of an address from the network's <ip> elements.
func parseLeases(r io.Reader, prefix func(net.IP) int, mac string) ([]driver.DHCPLease, error) {
	var out []driver.DHCPLease
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	v6 := false
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "duid" {
			v6 = true
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("lease file line %d: %d fields, want at least 4", line, len(f))
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || exp < 0 {
			return nil, fmt.Errorf("lease file line %d: bad expiry %q", line, f[0])
		}
		ip := net.ParseIP(f[2])
		if ip == nil {
			return nil, fmt.Errorf("lease file line %d: bad address %q", line, f[2])
		}
		l := driver.DHCPLease{Protocol: "ipv4"}
		if exp > 0 {
			l.Expiry = time.Unix(exp, 0)
		}
		if v6 || ip.To4() == nil {
			l.Protocol = "ipv6"
			// The IAID is no MAC; libvirt matches IPv6 leases to MACs
			// through its own records, which dnsmasq's file lacks.
		} else {
			hw, err := net.ParseMAC(f[1])
			if err != nil {
				return nil, fmt.Errorf("lease file line %d: bad MAC %q", line, f[1])
			}
			l.MAC = hw.String()
		}
		l.Address = fmt.Sprintf("%s/%d", ip, prefix(ip))
		if f[3] != "*" {
			l.Hostname = f[3]
		}
		if len(f) > 4 && f[4] != "*" {
			l.ClientID = f[4]
		}
		if mac != "" && !strings.EqualFold(l.MAC, mac) {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("lease file: %w", err)
	}
	return out, nil
}
