// Command glbctl is glb's operator CLI: it prints and previews forwarding
// tables, computes which hosts a flow goes to and (with --state) drains and
// fills hosts. Run `glbctl --help` for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "glbctl:", err)
		os.Exit(1)
	}
}
