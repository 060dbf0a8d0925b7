package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Config says where and how the agent runs. Iface and VIPs are required.
type Config struct {
	// Iface is the uplink the directors' GUE packets arrive on. The
	// program is attached to its tcx ingress hook.
	Iface string
	// VIPs are the service addresses this host answers for. They go on
	// lo as /32 (IPv4) or /128 (IPv6) addresses.
	VIPs []netip.Addr
	// Self is this host's IPv4 address, the one the directors' tables
	// list. GUE to any other address passes untouched, and forwarded
	// packets leave from it. The invalid Addr means the first IPv4
	// address of Iface.
	Self netip.Addr
	// GUEFrom are the outer IPv4 source prefixes GUE may come from: the
	// directors and the other proxy hosts (which forward second-chance
	// packets). GUE for this host from anywhere else is dropped and counted
	// as dropped_untrusted_source. Empty accepts any source, which lets
	// any host that reaches UDP 19523 inject packets into the VIPs and
	// bounce packets off this host; Start logs a warning then.
	GUEFrom []netip.Prefix
	// PinPath is a directory on a BPF filesystem where the agent pins its
	// tcx link ("link") and its counters ("redirect_stats"), so the
	// program stays attached when the agent exits with Leave or dies, and
	// the next agent swaps its program into the same link without a gap.
	// At Start, a link pinned there for Iface is adopted. Give each
	// uplink its own directory. Empty pins nothing: the program is
	// detached when the agent's process ends (tests).
	PinPath string
	// StateFile is where the agent records what it changed on the host
	// (the VIPs it added, each sysctl's value from before), rewritten
	// before every change, so the agent that adopts a pinned link after a
	// Leave or a crash knows what to undo at its own Close. It must not be
	// on a BPF filesystem, which holds no regular files. Empty records
	// nothing.
	StateFile string
	// Log gets one line for every change the agent makes to the host and
	// for every change it undoes. Nil discards.
	Log *slog.Logger
	// Registerer gets the agent's collector (glb_redirect_* metrics) at
	// Start; Close unregisters it. Nil: no metrics.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	if c.Iface == "" {
		return errors.New("no uplink interface: set the interface GUE arrives on")
	}
	if c.Iface == "lo" {
		return errors.New("the uplink cannot be lo: the VIPs live there")
	}
	if len(c.VIPs) == 0 {
		return errors.New("no VIP: give at least one service address")
	}
	seen := map[netip.Addr]bool{}
	for _, v := range c.VIPs {
		if !v.IsValid() || v.IsUnspecified() || v.IsLoopback() || v.IsMulticast() || v.Zone() != "" {
			return fmt.Errorf("VIP %s is not a unicast service address", v)
		}
		if v.Is4In6() {
			return fmt.Errorf("VIP %s: write IPv4 VIPs as IPv4", v)
		}
		if seen[v] {
			return fmt.Errorf("VIP %s given twice", v)
		}
		seen[v] = true
	}
	if c.Self.IsValid() && !c.Self.Is4() {
		return fmt.Errorf("self address %s is not IPv4: GUE's outer header is IPv4 only", c.Self)
	}
	seenP := map[netip.Prefix]bool{}
	for _, p := range c.GUEFrom {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("trusted GUE source %s is not an IPv4 prefix: GUE's outer header is IPv4 only", p)
		}
		if p != p.Masked() {
			return fmt.Errorf("trusted GUE source %s has host bits set: write %s", p, p.Masked())
		}
		if seenP[p] {
			return fmt.Errorf("trusted GUE source %s given twice", p)
		}
		seenP[p] = true
	}
	return nil
}
