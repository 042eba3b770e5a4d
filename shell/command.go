package shell

import "strings"

// Kind is the kind of a command option, as in virsh's vshCmdOptType.
type Kind int

// Option kinds.
const (
	// KindBool is a flag without a value (--all).
	KindBool Kind = iota
	// KindString is a named option with a value (--mode acpi). Like
	// virsh 9.0, it may also be given positionally once the options
	// before it are filled.
	KindString
	// KindInt is an option with a numeric value.
	KindInt
	// KindData is a value usually given positionally (<domain>).
	KindData
	// KindArgv collects all remaining positional values.
	KindArgv
)

// Option describes one option of a command.
type Option struct {
	Name     string
	Kind     Kind
	Required bool
	// Label is the option as the OPTIONS section of help shows it.
	Label string
	Help  string
}

// Command describes a shell command: its help texts and options. The
// handler lives in the handlers table, keyed by name.
type Command struct {
	Name        string
	Group       string // help keyword of the command's group
	Brief       string
	Synopsis    string // without the command name
	Description string
	Options     []Option
}

func (c *Command) option(name string) *Option {
	for i := range c.Options {
		if c.Options[i].Name == name {
			return &c.Options[i]
		}
	}
	return nil
}

// addOption appends an option that virsh does not have (--json,
// --no-validate) and keeps the synopsis in step.
func (c *Command) addOption(o Option) {
	c.Options = append(c.Options, o)
	defer func() { c.Synopsis = strings.TrimSpace(c.Synopsis) }()
	switch o.Kind {
	case KindBool:
		c.Synopsis += " [--" + o.Name + "]"
	case KindData:
		if o.Required {
			c.Synopsis += " <" + o.Name + ">"
		} else {
			c.Synopsis += " [<" + o.Name + ">]"
		}
	case KindArgv:
		c.Synopsis += " <" + o.Name + ">..."
	default:
		c.Synopsis += " [--" + o.Name + " <string>]"
	}
}

// group is a help group of commands.
type group struct {
	Keyword string
	Title   string
}

// groups lists the help groups in virsh's order.
var groups = []group{
	{"domain", "Domain Management"},
	{"monitor", "Domain Monitoring"},
	{"host", "Host and Hypervisor"},
	{"network", "Networking"},
	{"pool", "Storage Pool"},
	{"volume", "Storage Volume"},
	{"virsh", "Virsh itself"},
}
