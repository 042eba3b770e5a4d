// Command vsh-payload writes the vsh test payload kernel (package
// guest/payload) to a file, for a domain's <os><kernel>; with -S it prints
// the payload's assembly source instead.
//
//	vsh-payload -o /tmp/payload.elf
//
// The kernel command line's first character picks what the guest does
// after printing VSH-PAYLOAD-READY: p (power off), r (reboot), e (echo the
// console, polling), i (echo the console, interrupt-driven), h (idle).
package main

import (
	"flag"
	"fmt"
	"os"

	"vsh/guest/payload"
)

func main() {
	out := flag.String("o", "payload.elf", "output file")
	src := flag.Bool("S", false, "print the assembly source instead")
	flag.Parse()
	if *src {
		fmt.Print(payload.Source())
		return
	}
	if err := payload.WriteFile(*out); err != nil {
		fmt.Fprintln(os.Stderr, "vsh-payload:", err)
		os.Exit(1)
	}
}
