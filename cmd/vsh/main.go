// Command vsh is a virsh-compatible shell for vsh's virtualization
// manager: `vsh` alone is interactive, `vsh CMD ARGS...` and
// `vsh "cmd1; cmd2"` run commands, and commands on stdin are read line by
// line. `vsh __vmm ...` is the VMM process mode the engine re-executes.
package main

import (
	"fmt"
	"os"

	_ "vsh/hypervisor/driver/local"
	_ "vsh/hypervisor/driver/testdriver"
	"vsh/shell"
)

// vmmMode is the first argument that selects the VMM process mode.
const vmmMode = "__vmm"

// vmmMain runs a VMM process (vsh __vmm ARGS...) and returns its exit
// status. The engine sets it from an init function in another file of
// this package; it is the single hook point for the VMM mode.
var vmmMain func(args []string) int

func main() {
	if len(os.Args) > 1 && os.Args[1] == vmmMode {
		if vmmMain == nil {
			fmt.Fprintln(os.Stderr, "error: this vsh binary was built without the VMM engine")
			os.Exit(1)
		}
		os.Exit(vmmMain(os.Args[2:]))
	}
	os.Exit(shell.Main(os.Args[1:]))
}
