package shell

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"vsh/hypervisor/driver"
	"vsh/schema"
)

func init() {
	for name, h := range map[string]handler{
		"define": cmdDefine, "create": cmdCreate, "undefine": cmdUndefine,
		"start": cmdStart, "shutdown": cmdShutdown, "destroy": cmdDestroy,
		"reboot": cmdReboot, "reset": cmdReset, "suspend": cmdSuspend, "resume": cmdResume,
		"list": cmdList, "dominfo": cmdDominfo, "domstate": cmdDomstate,
		"domid": cmdDomid, "domname": cmdDomname, "domuuid": cmdDomuuid,
		"dumpxml": cmdDumpxml, "autostart": cmdAutostart, "desc": cmdDesc,
		"domrename": cmdDomrename, "setmem": cmdSetmem, "setmaxmem": cmdSetmaxmem,
		"setvcpus": cmdSetvcpus, "vcpucount": cmdVcpucount, "edit": cmdEdit,
	} {
		handlers[name] = h
	}
}

// lookupDomain resolves the <domain> option; virsh 9.0 prints only its
// own line when the lookup fails.
func (s *Shell) lookupDomain(c *Call) (driver.DomainInfo, error) {
	ref := c.Str("domain")
	d, err := s.conn.LookupDomain(ref)
	if err != nil {
		return d, fail(nil, "failed to get domain '%s'", ref)
	}
	return d, nil
}

// readFile reads an XML file argument with virsh's error text.
func readFile(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*os.PathError); ok {
			msg = pe.Err.Error()
			if len(msg) > 0 {
				msg = strings.ToUpper(msg[:1]) + msg[1:]
			}
		}
		return nil, fail(nil, "Failed to open file '%s': %s", name, msg)
	}
	return data, nil
}

func cmdDefine(s *Shell, c *Call) error {
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	d, err := s.conn.DefineDomain(data, file, !c.Has("no-validate"))
	if err != nil {
		return fail(err, "Failed to define domain from %s", file)
	}
	s.extraf("Domain '%s' defined from %s\n", d.Name, file)
	return nil
}

func cmdCreate(s *Shell, c *Call) error {
	file := c.Str("file")
	data, err := readFile(file)
	if err != nil {
		return err
	}
	d, err := s.conn.CreateDomain(data, file, true, c.Has("paused"))
	if err != nil {
		return fail(err, "Failed to create domain from %s", file)
	}
	s.extraf("Domain '%s' created from %s\n", d.Name, file)
	if c.Has("console") {
		return s.console(d.Name, "", false)
	}
	return nil
}

func cmdUndefine(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	flags := driver.UndefineFlags{
		ManagedSave: c.Has("managed-save"), SnapshotsMetadata: c.Has("snapshots-metadata"),
		CheckpointsMetadata: c.Has("checkpoints-metadata"), NVRAM: c.Has("nvram"), KeepNVRAM: c.Has("keep-nvram"),
		RemoveAllStorage: c.Has("remove-all-storage"), WipeStorage: c.Has("wipe-storage"),
	}
	if v := c.Str("storage"); v != "" {
		flags.Storage = strings.Split(v, ",")
	}
	if err := s.conn.UndefineDomain(d.Name, flags); err != nil {
		return fail(err, "Failed to undefine domain '%s'", d.Name)
	}
	s.extraf("Domain '%s' has been undefined\n", d.Name)
	return nil
}

func cmdStart(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if d.Active() {
		return fail(nil, "Domain is already active")
	}
	if _, err := s.conn.StartDomain(d.Name, c.Has("paused")); err != nil {
		return fail(err, "Failed to start domain '%s'", d.Name)
	}
	s.extraf("Domain '%s' started\n", d.Name)
	if c.Has("console") {
		return s.console(d.Name, "", false)
	}
	return nil
}

// shutdownModes are the values of shutdown/reboot --mode.
var shutdownModes = []string{"acpi", "agent", "initctl", "signal", "paravirt"}

func shutdownMode(c *Call) (driver.ShutdownMode, error) {
	v := c.Str("mode")
	if v == "" {
		return "", nil
	}
	for _, m := range strings.Split(v, ",") {
		ok := false
		for _, known := range shutdownModes {
			ok = ok || m == known
		}
		if !ok {
			return "", fail(nil, "Unknown mode %s value, expecting 'acpi', 'agent', 'initctl', 'signal', or 'paravirt'", m)
		}
	}
	return driver.ShutdownMode(v), nil
}

func cmdShutdown(s *Shell, c *Call) error {
	mode, err := shutdownMode(c)
	if err != nil {
		return err
	}
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if err := s.conn.ShutdownDomain(d.Name, mode); err != nil {
		return fail(err, "Failed to shutdown domain '%s'", d.Name)
	}
	s.extraf("Domain '%s' is being shutdown\n", d.Name)
	return nil
}

func cmdReboot(s *Shell, c *Call) error {
	mode, err := shutdownMode(c)
	if err != nil {
		return err
	}
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if err := s.conn.RebootDomain(d.Name, mode); err != nil {
		return fail(err, "Failed to reboot domain '%s'", d.Name)
	}
	s.extraf("Domain '%s' is being rebooted\n", d.Name)
	return nil
}

// simpleDomainOp runs one driver call on the looked-up domain with
// virsh's failure and success texts.
func simpleDomainOp(s *Shell, c *Call, op func(string) error, failText, okText string) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if err := op(d.Name); err != nil {
		return fail(err, failText, d.Name)
	}
	s.extraf(okText+"\n", d.Name)
	return nil
}

func cmdDestroy(s *Shell, c *Call) error {
	graceful := c.Has("graceful")
	return simpleDomainOp(s, c, func(n string) error { return s.conn.DestroyDomain(n, graceful) },
		"Failed to destroy domain '%s'", "Domain '%s' destroyed")
}

func cmdReset(s *Shell, c *Call) error {
	return simpleDomainOp(s, c, s.conn.ResetDomain, "Failed to reset domain '%s'", "Domain '%s' was reset")
}

func cmdSuspend(s *Shell, c *Call) error {
	return simpleDomainOp(s, c, s.conn.SuspendDomain, "Failed to suspend domain '%s'", "Domain '%s' suspended")
}

func cmdResume(s *Shell, c *Call) error {
	return simpleDomainOp(s, c, s.conn.ResumeDomain, "Failed to resume domain '%s'", "Domain '%s' resumed")
}

func cmdAutostart(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	on := !c.Has("disable")
	if err := s.conn.SetDomainAutostart(d.Name, on); err != nil {
		if on {
			return fail(err, "Failed to mark domain '%s' as autostarted", d.Name)
		}
		return fail(err, "Failed to unmark domain '%s' as autostarted", d.Name)
	}
	if on {
		s.extraf("Domain '%s' marked as autostarted\n", d.Name)
	} else {
		s.extraf("Domain '%s' unmarked as autostarted\n", d.Name)
	}
	return nil
}

// jsonDomain is the JSON form of a domain (see JSON.md).
type jsonDomain struct {
	driver.DomainInfo
	State  string `json:"state"`
	Reason string `json:"reason"`
}

func toJSONDomain(d driver.DomainInfo) jsonDomain {
	return jsonDomain{DomainInfo: d, State: d.State.String(), Reason: driver.ReasonString(d.State, d.Reason)}
}

func cmdList(s *Shell, c *Call) error {
	doms, err := s.conn.ListDomains()
	if err != nil {
		return fail(err, "Failed to list domains")
	}
	active, inactive := true, false
	if c.Has("inactive") {
		active, inactive = false, true
	}
	if c.Has("all") {
		active, inactive = true, true
	}
	var out []driver.DomainInfo
	for _, d := range doms {
		if d.Active() && !active || !d.Active() && !inactive {
			continue
		}
		if c.Has("persistent") && !c.Has("transient") && !d.Persistent ||
			c.Has("transient") && !c.Has("persistent") && d.Persistent {
			continue
		}
		if c.Has("autostart") && !c.Has("no-autostart") && !d.Autostart ||
			c.Has("no-autostart") && !c.Has("autostart") && d.Autostart {
			continue
		}
		if c.Has("with-managed-save") && !c.Has("without-managed-save") && !d.ManagedSave ||
			c.Has("without-managed-save") && !c.Has("with-managed-save") && d.ManagedSave {
			continue
		}
		// vsh keeps no snapshots or checkpoints yet.
		if c.Has("with-snapshot") && !c.Has("without-snapshot") || c.Has("with-checkpoint") && !c.Has("without-checkpoint") {
			continue
		}
		if st := []string{"state-running", "state-paused", "state-shutoff", "state-other"}; c.Has(st[0]) || c.Has(st[1]) || c.Has(st[2]) || c.Has(st[3]) {
			var match bool
			switch d.State {
			case driver.StateRunning:
				match = c.Has(st[0])
			case driver.StatePaused:
				match = c.Has(st[1])
			case driver.StateShutoff:
				match = c.Has(st[2])
			default:
				match = c.Has(st[3])
			}
			if !match {
				continue
			}
		}
		out = append(out, d)
	}
	// virsh lists running domains by ID, then inactive ones by name.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Active() != b.Active() {
			return a.Active()
		}
		if a.Active() {
			return a.ID < b.ID
		}
		return a.Name < b.Name
	})
	if c.Has("json") {
		l := make([]jsonDomain, 0, len(out))
		for _, d := range out {
			l = append(l, toJSONDomain(d))
		}
		return s.printJSON(l)
	}
	if !c.Has("table") && (c.Has("name") || c.Has("uuid") || c.Has("id")) {
		for _, d := range out {
			var f []string
			if c.Has("id") {
				if !d.Active() {
					continue
				}
				f = append(f, strconv.Itoa(d.ID))
			}
			if c.Has("uuid") {
				f = append(f, d.UUID)
			}
			if c.Has("name") {
				f = append(f, d.Name)
			}
			s.printf("%s\n", strings.Join(f, " "))
		}
		return nil
	}
	header := []string{"Id", "Name", "State"}
	if c.Has("title") {
		header = append(header, "Title")
	}
	rows := make([][]string, 0, len(out))
	for _, d := range out {
		id := "-"
		if d.Active() {
			id = strconv.Itoa(d.ID)
		}
		state := d.State.String()
		if c.Has("managed-save") && d.ManagedSave && !d.Active() {
			state = "saved"
		}
		r := []string{id, d.Name, state}
		if c.Has("title") {
			r = append(r, d.Title)
		}
		rows = append(rows, r)
	}
	s.printf("%s", table(header, rows, s.Quiet))
	return nil
}

func cmdDominfo(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if c.Has("json") {
		return s.printJSON(toJSONDomain(d))
	}
	id := "-"
	if d.Active() {
		id = strconv.Itoa(d.ID)
	}
	autostart := "disable"
	if d.Autostart {
		autostart = "enable"
	}
	p := []string{"Id", id, "Name", d.Name, "UUID", d.UUID, "OS Type", d.OSType,
		"State", d.State.String(), "CPU(s)", strconv.Itoa(d.VCPUs)}
	if d.CPUTime != 0 {
		p = append(p, "CPU time", fmt.Sprintf("%.1fs", d.CPUTime.Seconds()))
	}
	maxMem := "no limit"
	if d.MaxMemKiB != 0 {
		maxMem = fmt.Sprintf("%d KiB", d.MaxMemKiB)
	}
	p = append(p, "Max memory", maxMem, "Used memory", fmt.Sprintf("%d KiB", d.MemoryKiB),
		"Persistent", yesNo(d.Persistent), "Autostart", autostart, "Managed save", yesNo(d.ManagedSave))
	if d.SecurityModel != "" {
		p = append(p, "Security model", d.SecurityModel, "Security DOI", d.SecurityDOI)
		if d.SecurityLabel != "" {
			p = append(p, "Security label", d.SecurityLabel)
		}
	}
	s.printf("%s", kv(15, p...))
	return nil
}

func cmdDomstate(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if c.Has("json") {
		return s.printJSON(map[string]string{"state": d.State.String(), "reason": driver.ReasonString(d.State, d.Reason)})
	}
	if c.Has("reason") {
		s.printf("%s (%s)\n", d.State, driver.ReasonString(d.State, d.Reason))
	} else {
		s.printf("%s\n", d.State)
	}
	return nil
}

func cmdDomid(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if c.Has("json") {
		return s.printJSON(map[string]int{"id": d.ID})
	}
	if d.Active() {
		s.printf("%d\n", d.ID)
	} else {
		s.printf("-\n")
	}
	return nil
}

func cmdDomname(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	return s.printValue(c, "name", d.Name)
}

func cmdDomuuid(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	return s.printValue(c, "uuid", d.UUID)
}

func cmdDumpxml(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	xml, err := s.conn.DomainXML(d.Name, c.Has("inactive"))
	if err != nil {
		return fail(err, "")
	}
	s.printf("%s\n", trimNL(string(xml)))
	return nil
}

// scope returns the --live/--config/--current choice.
func scope(c *Call) (driver.ModifyScope, error) {
	if c.Has("current") && (c.Has("live") || c.Has("config")) {
		other := "live"
		if !c.Has("live") {
			other = "config"
		}
		return driver.ModifyScope{}, fail(nil, "Options --current and --%s are mutually exclusive", other)
	}
	return driver.ModifyScope{Live: c.Has("live"), Config: c.Has("config")}, nil
}

func cmdDesc(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	sc, err := scope(c)
	if err != nil {
		return err
	}
	title := c.Has("title")
	what := "description"
	if title {
		what = "title"
	}
	if c.Has("new-desc") || c.Has("edit") {
		text := strings.Join(c.Argv("new-desc"), " ")
		if c.Has("edit") {
			cur, err := s.conn.DomainMetadata(d.Name, title, sc)
			if err != nil {
				return fail(err, "")
			}
			edited, changed, err := s.editText([]byte(cur), "desc")
			if err != nil {
				return err
			}
			if !changed {
				s.extraf("Domain %s not changed\n", what)
				return nil
			}
			text = strings.TrimRight(string(edited), "\n")
		}
		if err := s.conn.SetDomainMetadata(d.Name, title, text, sc); err != nil {
			return fail(err, "Failed to set new domain %s", what)
		}
		s.extraf("Domain %s updated successfully", what)
		return nil
	}
	text, err := s.conn.DomainMetadata(d.Name, title, sc)
	if err != nil {
		return fail(err, "")
	}
	if text == "" {
		s.extraf("No %s for domain: %s", what, d.Name)
		return nil
	}
	s.printf("%s", text)
	return nil
}

func cmdDomrename(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if err := s.conn.RenameDomain(d.Name, c.Str("new-name")); err != nil {
		return fail(err, "")
	}
	s.extraf("Domain successfully renamed\n")
	return nil
}

// scaledArg parses a scaled-integer option ("1G", "512") the way virsh's
// vshCommandOptScaledInt does; defaultUnit applies without a suffix.
func scaledArg(c *Call, name, defaultUnit string) (uint64, error) {
	v := c.Str(name)
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	malformed := fmt.Sprintf("Scaled numeric value '%s' for <%s> option is malformed or out of range", v, name)
	if i == 0 {
		return 0, fail(nil, "%s", malformed)
	}
	n, err := schema.ParseScaled(v[:i], v[i:], defaultUnit, 0)
	if err != nil {
		if _, uerr := schema.ParseScaled("1", v[i:], defaultUnit, 0); uerr != nil {
			return 0, fail(driver.Errorf(driver.ErrInvalidArg, "unknown suffix '%s'", v[i:]), "%s", malformed)
		}
		return 0, fail(nil, "%s", malformed)
	}
	return n, nil
}

func memoryCmd(s *Shell, c *Call, set func(string, uint64, driver.ModifyScope) error, failText string) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	sc, err := scope(c)
	if err != nil {
		return err
	}
	bytes, err := scaledArg(c, "size", "KiB")
	if err != nil {
		return err
	}
	if err := set(d.Name, bytes/1024, sc); err != nil {
		return fail(err, "%s", failText)
	}
	return nil
}

func cmdSetmem(s *Shell, c *Call) error { return memoryCmd(s, c, s.conn.SetMemory, "") }

func cmdSetmaxmem(s *Shell, c *Call) error {
	return memoryCmd(s, c, s.conn.SetMaxMemory, "Unable to change MaxMemorySize")
}

// intArg parses a numeric option with virsh's error text.
func intArg(c *Call, name string) (int, error) {
	v := c.Str(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fail(nil, "Numeric value '%s' for <%s> option is malformed or out of range", v, name)
	}
	return n, nil
}

func cmdSetvcpus(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	n, err := intArg(c, "count")
	if err != nil {
		return err
	}
	sc, err := scope(c)
	if err != nil {
		return err
	}
	if err := s.conn.SetVCPUs(d.Name, n, c.Has("maximum"), sc); err != nil {
		return fail(err, "")
	}
	return nil
}

func cmdVcpucount(s *Shell, c *Call) error {
	d, err := s.lookupDomain(c)
	if err != nil {
		return err
	}
	if c.Has("maximum") && c.Has("active") {
		return fail(nil, "Options --maximum and --active are mutually exclusive")
	}
	if _, err := scope(c); err != nil {
		return err
	}
	n, err := s.conn.VCPUCount(d.Name)
	if err != nil {
		return fail(err, "")
	}
	if c.Has("json") {
		return s.printJSON(map[string]int{"maximum_config": n.MaxConfig, "maximum_live": n.MaxLive,
			"current_config": n.CurrentConfig, "current_live": n.CurrentLive})
	}
	any := c.Has("maximum") || c.Has("active") || c.Has("live") || c.Has("config") || c.Has("current")
	if !any {
		for _, l := range []struct {
			a, b string
			v    int
		}{{"maximum", "config", n.MaxConfig}, {"maximum", "live", n.MaxLive},
			{"current", "config", n.CurrentConfig}, {"current", "live", n.CurrentLive}} {
			if l.v >= 0 {
				s.printf("%-12s %-12s %3d\n", l.a, l.b, l.v)
			}
		}
		return nil
	}
	live := c.Has("live") || !c.Has("config") && d.Active()
	var v int
	switch {
	case c.Has("maximum") && live:
		v = n.MaxLive
	case c.Has("maximum"):
		v = n.MaxConfig
	case live:
		v = n.CurrentLive
	default:
		v = n.CurrentConfig
	}
	if v < 0 {
		return fail(nil, "Requested operation is not valid: domain is not running")
	}
	s.printf("%d\n", v)
	return nil
}
