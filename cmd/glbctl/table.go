package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/director/table"
)

func tableRowsCommand() command {
	return command{
		path:    "table rows",
		args:    "--config FILE [--table NAME]",
		summary: "print every row of a forwarding table",
		help: `Prints one line per row, "row<TAB>hop,hop,…", primary first, for all 65,536
rows. Health comes from the config's "healthy" fields (absent means healthy).`,
		flags: func(fs *flag.FlagSet) func(context.Context, env) error {
			config := fs.String("config", "", "forwarding table config `FILE` (JSON, docs/design.md §4)")
			name := fs.String("table", "", "table `NAME` (needed when the config has several)")
			return func(ctx context.Context, e env) error {
				c, err := loadConfig(*config)
				if err != nil {
					return err
				}
				spec, err := pickTable(c, *name)
				if err != nil {
					return err
				}
				t := table.Build(spec, nil)
				w := bufio.NewWriterSize(e.stdout, 1<<16)
				var line []byte
				for r := range table.NumRows {
					line = strconv.AppendInt(line[:0], int64(r), 10)
					line = append(line, '\t')
					if t.Width > 0 {
						for i, b := range t.Row(uint16(r)) {
							if i > 0 {
								line = append(line, ',')
							}
							line = t.Backends[b].IP.AppendTo(line)
						}
					}
					line = append(line, '\n')
					if _, err := w.Write(line); err != nil {
						return err
					}
				}
				return w.Flush()
			}
		},
	}
}

func tableDiffCommand() command {
	return command{
		path:    "table diff",
		args:    "--from FILE --to FILE [--table NAME]\n   or: glbctl table diff [--state …] (--drain|--fill|--activate|--remove HOST | --to FILE) [--table NAME]",
		summary: "preview a table change: rows moved, second chance, lost flows",
		help: `The no-op preview. For every table in either config, it counts the rows whose
hop list changes, the rows whose primary changes while the old primary stays
in the hop list (their flows survive through second chance), and the rows
whose new hop list no longer holds the old primary (their flows break).
Every row carries about 1/65,536 of the flows.

Without --from, the current side is the live state (--state, default
$GLB_STATE, else /etc/glb/forwarding_table.json), with the directors' live
health when they publish it. The proposed side is --to FILE, or the current
side with one pending host change applied (--drain, --fill, --activate or
--remove HOST), checked against the same rules as the real command: a
change glbctl would refuse is reported as refused (add --force to see what
overriding the rule would do).`,
		flags: func(fs *flag.FlagSet) func(context.Context, env) error {
			from := fs.String("from", "", "the current config `FILE` (default: the live state)")
			to := fs.String("to", "", "the proposed config `FILE`")
			name := fs.String("table", "", "only this table `NAME`")
			state := stateFlag(fs)
			pending := hostChangeFlags(fs)
			return func(ctx context.Context, e env) error {
				c, err := pending.change(e)
				if err != nil {
					return err
				}
				if *to == "" && c == nil {
					return errors.New("table diff needs --from and --to, or a pending change against the live state: --drain, --fill, --activate or --remove HOST, or --to FILE")
				}
				if *to != "" && c != nil {
					return errors.New("give either --to FILE or a pending host change, not both")
				}
				var a *table.Config
				var health table.Health
				if *from != "" {
					if a, err = loadConfig(*from); err != nil {
						return err
					}
				} else {
					st, ctx, done, err := openState(ctx, e, *state)
					if err != nil {
						return err
					}
					defer done()
					if a, err = st.Load(ctx); err != nil {
						return err
					}
					health, _ = liveHealth(ctx, e, st)
				}
				var b *table.Config
				if *to != "" {
					if b, err = loadConfig(*to); err != nil {
						return err
					}
					return writeDiffs(e, a, b, health, *name)
				}
				b = a.Clone()
				applied, err := c.Apply(b)
				if err != nil {
					return fmt.Errorf("glbctl %s would refuse this: %w", consul.Verb(c.To), err)
				}
				if applied.NoOp {
					fmt.Fprintf(e.stdout, "%s is already %s: no change\n", c.Host, c.To)
					return nil
				}
				fmt.Fprintf(e.stdout, "preview: %s %s → %s in %s\n\n", c.Host, applied.From, applied.To, strings.Join(applied.Tables, ", "))
				names := applied.Tables
				if *name != "" {
					names = []string{*name}
				}
				return writeTableDiffs(e, a, b, health, names)
			}
		},
	}
}

// writeDiffs prints the diff of every table in a or b (or only name),
// with the same health applied to both sides.
func writeDiffs(e env, a, b *table.Config, health table.Health, name string) error {
	var names []string
	seen := map[string]bool{}
	for _, c := range []*table.Config{a, b} {
		for _, t := range c.Tables {
			if !seen[t.Name] && (name == "" || t.Name == name) {
				seen[t.Name] = true
				names = append(names, t.Name)
			}
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("no table %q in either config", name)
	}
	for i, n := range names {
		var ta, tb *table.Table
		if s := a.Table(n); s != nil {
			ta = table.Build(s, health)
		}
		if s := b.Table(n); s != nil {
			tb = table.Build(s, health)
		}
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		switch {
		case ta == nil:
			fmt.Fprintf(e.stdout, "table %s is new\n", n)
		case tb == nil:
			fmt.Fprintf(e.stdout, "table %s is removed\n", n)
		}
		if err := table.Compare(ta, tb).Write(e.stdout); err != nil {
			return err
		}
	}
	return nil
}

func loadConfig(path string) (*table.Config, error) {
	if path == "" {
		return nil, errors.New("--config is required: the forwarding table config file (JSON)")
	}
	return table.Load(path)
}

// pickTable returns the named table, or the only one.
func pickTable(c *table.Config, name string) (*table.Spec, error) {
	if name != "" {
		if s := c.Table(name); s != nil {
			return s, nil
		}
		return nil, fmt.Errorf("no table %q: the config has %s", name, tableNames(c))
	}
	switch len(c.Tables) {
	case 0:
		return nil, errors.New("the config has no tables")
	case 1:
		return &c.Tables[0], nil
	}
	return nil, fmt.Errorf("the config has %d tables: pick one with --table (%s)", len(c.Tables), tableNames(c))
}

func tableNames(c *table.Config) string {
	var n []string
	for _, t := range c.Tables {
		n = append(n, t.Name)
	}
	return strings.Join(n, ", ")
}
