package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A sysctl the agent may change, with the values it accepts as they are.
type sysctlRule struct {
	key  string // under /proc/sys, with slashes
	ok   func(v int) bool
	want int
	why  string
	// maxWith, when set, is the "all" key the kernel combines key with by
	// taking the larger value: ok then judges that effective value.
	maxWith string
}

// sysctlChange is one change the agent made, to undo at Close.
type sysctlChange struct {
	key      string
	old, new string
}

func oneOf(vals ...int) func(int) bool {
	return func(v int) bool { return slices.Contains(vals, v) }
}

// sysctlRules lists what DSR and in-BPF decapsulation need. The kernel
// combines rp_filter, arp_ignore and arp_announce of "all" and of an
// interface by taking the larger value, which is why some rules set the
// uplink and others "all".
func sysctlRules(iface string, ipv6 bool) []sysctlRule {
	conf := "net/ipv4/conf/"
	rules := []sysctlRule{
		{
			// The kernel filters with max(all, uplink): the uplink at 0
			// does not turn off an "all" of 1, while the uplink at 2 makes
			// the uplink loose whatever "all" is, without touching the
			// other interfaces.
			key: conf + iface + "/rp_filter", maxWith: conf + "all/rp_filter", ok: oneOf(0, 2), want: 2,
			why: "decapsulated packets arrive on the uplink with the client's source address; " +
				"strict reverse-path filtering (max of all and the uplink is 1) drops them whenever the route back to the client " +
				"is not through the uplink, loose (2) only asks for some route back",
		},
		{
			key: conf + "all/arp_ignore", ok: oneOf(1, 2, 8), want: 1,
			why: "the VIPs are on lo; with arp_ignore 0 every interface answers ARP for them " +
				"and steals the router's traffic from the directors",
		},
		{
			key: conf + iface + "/arp_ignore", ok: oneOf(0, 1, 2, 8), want: 1,
			why: "the uplink's own arp_ignore would override all's (the larger wins) and " +
				"answer ARP for the VIPs",
		},
		{
			key: conf + "all/arp_announce", ok: oneOf(2), want: 2,
			why: "ARP requests must not carry a VIP as their source address, or neighbours " +
				"learn this host's MAC for the VIP",
		},
	}
	if ipv6 {
		rules = append(rules,
			sysctlRule{key: "net/ipv6/conf/lo/disable_ipv6", ok: oneOf(0), want: 0,
				why: "IPv6 VIPs live on lo"},
			sysctlRule{key: "net/ipv6/conf/" + iface + "/disable_ipv6", ok: oneOf(0), want: 0,
				why: "decapsulated IPv6 packets are received on the uplink"},
		)
	}
	return rules
}

func sysctlPath(key string) string { return "/proc/sys/" + key }

// sysctlName is the dotted name sysctl(8) uses.
func sysctlName(key string) string { return strings.ReplaceAll(key, "/", ".") }

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", sysctlName(key), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", sysctlName(key), value, err)
	}
	return nil
}

// effective is the value the kernel acts on for r, given the current
// value of r.key: the larger of it and r.maxWith's.
func effective(r sysctlRule, cur string) (int, error) {
	v, err := strconv.Atoi(cur)
	if err != nil || r.maxWith == "" {
		return v, err
	}
	other, err := readSysctl(r.maxWith)
	if err != nil {
		return 0, err
	}
	o, err := strconv.Atoi(other)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s is %q, not a number", sysctlName(r.maxWith), other)
	}
	return max(v, o), nil
}

// applySysctls brings every rule's sysctl to an accepted value and
// records each change: one per key, with the value from before the
// agent's first change, so Close restores that one however often
// Reconcile had to set the key again.
func (a *Agent) applySysctls() error {
	for _, r := range sysctlRules(a.cfg.Iface, a.hasIPv6()) {
		cur, err := readSysctl(r.key)
		if err != nil {
			return err
		}
		v, err := effective(r, cur)
		if err == nil && r.ok(v) {
			continue
		}
		want := strconv.Itoa(r.want)
		// Record the change before making it: a crash in between leaves
		// a record of a change not made (restoreSysctls finds the old
		// value in place and skips it), never a change without a record.
		i := slices.IndexFunc(a.sysctls, func(c sysctlChange) bool { return c.key == r.key })
		again := i >= 0
		var prev sysctlChange
		if again {
			prev = a.sysctls[i]
			a.sysctls[i].new = want
		} else {
			a.sysctls = append(a.sysctls, sysctlChange{key: r.key, old: cur, new: want})
		}
		err = a.saveState()
		if err == nil {
			if a.recorded != nil {
				a.recorded(r.key)
			}
			err = writeSysctl(r.key, want)
		}
		if err != nil {
			if again {
				a.sysctls[i] = prev
			} else {
				a.sysctls = a.sysctls[:len(a.sysctls)-1]
			}
			return err // the caller saves the state without it
		}
		args := []any{"key", sysctlName(r.key), "old", cur, "new", want, "why", r.why}
		if r.maxWith != "" {
			args = append(args, "effective_before", v)
		}
		if again {
			a.log.Info("sysctl changed again", args...)
		} else {
			a.log.Info("sysctl changed", args...)
		}
	}
	return nil
}

// restoreSysctls puts back every value the agent changed, newest first.
// A value someone else changed since is left alone. A key that is gone
// (its interface was deleted) has nothing to restore. A change it could
// not undo stays the agent's, and in the state file, for a later attempt.
func (a *Agent) restoreSysctls() error {
	var errs []error
	var left []sysctlChange
	for i := len(a.sysctls) - 1; i >= 0; i-- {
		c := a.sysctls[i]
		cur, err := readSysctl(c.key)
		if errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("sysctl is gone (its interface was deleted); nothing to restore", "key", sysctlName(c.key), "before_us", c.old)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			left = append(left, c)
			continue
		}
		if cur == c.old {
			continue // recorded, but never made (a crash between the two) or already undone
		}
		if cur != c.new {
			a.log.Warn("sysctl changed by someone else; leaving it", "key", sysctlName(c.key), "ours", c.new, "now", cur, "before_us", c.old)
			continue
		}
		if err := writeSysctl(c.key, c.old); err != nil {
			errs = append(errs, err)
			left = append(left, c)
			continue
		}
		a.log.Info("sysctl restored", "key", sysctlName(c.key), "old", c.new, "new", c.old)
	}
	slices.Reverse(left) // back in the order they were made
	a.sysctls = left
	return joinErrs(errs)
}
