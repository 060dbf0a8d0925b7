package main

import (
	"context"
	"flag"
	"fmt"
	"os/user"
	"time"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/director/table"
)

// storeTimeout bounds every read and write of the state.
const storeTimeout = 30 * time.Second

// healthMaxAge is how old a director's health report may be before
// status and previews ignore it (directors republish every 30s).
const healthMaxAge = 2 * time.Minute

func stateFlag(fs *flag.FlagSet) *string {
	return fs.String("state", "", "the state: a forwarding table `FILE` (JSON) or consul://HOST:PORT/PREFIX\n(default $"+consul.EnvState+", else "+consul.DefaultFile+")")
}

// openState opens the state for one command: the store, and a context
// that bounds the command's reads and writes. Call done when finished.
func openState(ctx context.Context, e env, spec string) (consul.Store, context.Context, func(), error) {
	st, err := consul.Open(consul.Resolve(spec, e.getenv(consul.EnvState)), consul.Options{Log: e.log, Now: e.now})
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	return st, ctx, func() { cancel(); st.Close() }, nil
}

// defaultBy is who a change is recorded as: the user behind sudo, else the
// login user, else the user the process runs as.
func defaultBy(e env) string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := e.getenv(k); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// liveHealth reads the directors' health reports. It returns nil health
// (use the config's) when none is fresh; a failure to read them is a
// warning, not an error: the state matters more.
func liveHealth(ctx context.Context, e env, st consul.Store) (table.Health, []consul.HealthReport) {
	reports, err := st.HealthReports(ctx)
	if err != nil {
		e.log.Warn("cannot read live health; using the config's", "err", err)
		return nil, nil
	}
	var fresh []consul.HealthReport
	for _, r := range reports {
		if e.now().Sub(r.At) <= healthMaxAge {
			fresh = append(fresh, r)
		}
	}
	return consul.LiveHealth(fresh, e.now(), 0), fresh
}

// writeTableDiffs prints the diff of the named tables (every table in
// either config when names is empty), one after the other.
func writeTableDiffs(e env, before, after *table.Config, health table.Health, names []string) error {
	if len(names) == 0 {
		return writeDiffs(e, before, after, health, "")
	}
	for i, n := range names {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		if err := writeDiffs(e, before, after, health, n); err != nil {
			return err
		}
	}
	return nil
}

// hostChange is table diff's pending change: --drain, --fill, --activate
// or --remove HOST, with --reason, --by and --force.
type hostChange struct {
	hosts  map[table.State]*string
	reason *string
	by     *string
	force  *bool
}

func hostChangeFlags(fs *flag.FlagSet) hostChange {
	hc := hostChange{hosts: map[table.State]*string{}}
	for _, s := range []table.State{table.Draining, table.Filling, table.Active, table.Inactive} {
		hc.hosts[s] = fs.String(consul.Verb(s), "", "preview glbctl "+consul.Verb(s)+" `HOST` (address or name) against the state")
	}
	hc.reason = fs.String("reason", "", "the reason to record (for the preview only)")
	hc.by = fs.String("by", "", "who the change is by (for the preview only)")
	hc.force = fs.Bool("force", false, "preview as if --force overrode the one-at-a-time rule")
	return hc
}

// change returns the pending change, if one flag is set.
func (hc hostChange) change(e env) (*consul.Change, error) {
	var c *consul.Change
	for _, s := range []table.State{table.Draining, table.Filling, table.Active, table.Inactive} {
		if h := *hc.hosts[s]; h != "" {
			if c != nil {
				return nil, fmt.Errorf("preview one change at a time: --%s and --%s are both set", consul.Verb(c.To), consul.Verb(s))
			}
			c = &consul.Change{Host: h, To: s, Reason: *hc.reason, By: *hc.by, At: e.now(), Force: *hc.force}
			if c.By == "" {
				c.By = defaultBy(e)
			}
		}
	}
	return c, nil
}
