package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/glb-project/glb/director/table"
)

func stateExportCommand() command {
	return command{
		path:    "state export",
		args:    "[--state FILE|consul://HOST:PORT/PREFIX]",
		summary: "print the state as one forwarding-table JSON file (docs/design.md §4)",
		help: `Prints the effective state: for Consul, every table with each host's admin
state (PREFIX/hosts/<ip>) applied. The output is a valid --config file for
glb-director and a valid input for glbctl state import.`,
		flags: func(fs *flag.FlagSet) func(context.Context, env) error {
			state := stateFlag(fs)
			return func(ctx context.Context, e env) error {
				st, ctx, done, err := openState(ctx, e, *state)
				if err != nil {
					return err
				}
				defer done()
				cfg, err := st.Load(ctx)
				if err != nil {
					return err
				}
				b, err := cfg.Marshal()
				if err != nil {
					return err
				}
				_, err = e.stdout.Write(b)
				return err
			}
		},
	}
}

func stateImportCommand() command {
	return command{
		path:    "state import",
		args:    "FILE [--state FILE|consul://HOST:PORT/PREFIX] [--dry-run]",
		summary: "replace the state with a forwarding-table JSON file, showing the diff",
		help: `Validates FILE and writes it as the whole state: to seed Consul from a file,
to add or remove backends and tables, or to change binds, keys and hops.
Host states in FILE are written as they are (the one-at-a-time rule is for
drain, fill, activate and remove, not for imports). It prints the table diff
of the import; --dry-run prints it without writing.`,
		flags: func(fs *flag.FlagSet) func(context.Context, env) error {
			state := stateFlag(fs)
			dryRun := fs.Bool("dry-run", false, "show the diff without writing")
			return func(ctx context.Context, e env) error {
				if len(e.args) != 1 {
					return errors.New("state import needs one FILE: the forwarding-table JSON to import")
				}
				next, err := table.Load(e.args[0])
				if err != nil {
					return err
				}
				st, ctx, done, err := openState(ctx, e, *state)
				if err != nil {
					return err
				}
				defer done()
				var before, after *table.Config
				if *dryRun {
					before, err = st.Load(ctx)
					if err != nil {
						before = &table.Config{}
						fmt.Fprintf(e.stderr, "glbctl: cannot read the current state (%v): diffing against an empty one\n", err)
					}
					after = next
				} else {
					before, after, err = st.Update(ctx, func(c *table.Config) error { *c = *next.Clone(); return nil })
					if err != nil {
						return err
					}
				}
				verb := "imported"
				if *dryRun {
					verb = "dry run, nothing written: would import"
				}
				fmt.Fprintf(e.stdout, "%s %s into %s\n\n", verb, e.args[0], st)
				return writeDiffs(e, before, after, nil, "")
			}
		},
	}
}
