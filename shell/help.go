package shell

import (
	"fmt"
	"strings"
)

func init() {
	handlers["help"] = cmdHelp
}

// groupTitle returns a group's title as help prints it; virsh's own group
// is vsh's.
func groupLine(g group) string {
	if g.Keyword == "virsh" {
		return " Vsh itself (help keyword 'vsh'):\n"
	}
	return fmt.Sprintf(" %s (help keyword '%s'):\n", g.Title, g.Keyword)
}

// groupCommands returns the commands of a group in help order.
func (s *Shell) groupCommands(keyword string) []*Command {
	var cmds []*Command
	for _, c := range virshCommands {
		if c.Group == keyword {
			cmds = append(cmds, s.table[c.Name])
		}
	}
	for _, c := range extraCommands {
		if c.Group == keyword {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

func (s *Shell) printGroup(g group) {
	s.printf("%s", groupLine(g))
	for _, c := range s.groupCommands(g.Keyword) {
		s.printf("    %-30s %s\n", c.Name, c.Brief)
	}
}

func cmdHelp(s *Shell, c *Call) error {
	topic := c.Str("command")
	if topic == "" {
		s.printf("Grouped commands:\n\n")
		for _, g := range groups {
			s.printGroup(g)
			s.printf("\n")
		}
		return nil
	}
	if cmd, ok := s.table[topic]; ok {
		s.printCommandHelp(cmd)
		return nil
	}
	if topic == "vsh" {
		topic = "virsh"
	}
	for _, g := range groups {
		if g.Keyword == topic {
			s.printGroup(g)
			return nil
		}
	}
	return fail(nil, "command or command group '%s' doesn't exist", c.Str("command"))
}

// printCommandHelp prints NAME, SYNOPSIS, DESCRIPTION and OPTIONS as
// virsh's vshCmddefHelp does.
func (s *Shell) printCommandHelp(cmd *Command) {
	var b strings.Builder
	fmt.Fprintf(&b, "  NAME\n    %s - %s\n", cmd.Name, cmd.Brief)
	syn := cmd.Name
	if cmd.Synopsis != "" {
		syn += " " + cmd.Synopsis
	}
	fmt.Fprintf(&b, "\n  SYNOPSIS\n    %s\n", syn)
	if cmd.Description != "" {
		// Like virsh, only the first line is indented; the texts carry
		// their own indentation on the following lines.
		fmt.Fprintf(&b, "\n  DESCRIPTION\n    %s\n", cmd.Description)
	}
	if len(cmd.Options) > 0 {
		b.WriteString("\n  OPTIONS\n")
		for _, o := range cmd.Options {
			fmt.Fprintf(&b, "    %-15s  %s\n", o.Label, o.Help)
		}
	}
	b.WriteString("\n")
	s.printf("%s", b.String())
}
