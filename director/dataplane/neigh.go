package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ResolveNeighbors asks the kernel to resolve, and keep resolved, the MAC
// address of the next hop towards each address, for every address routed
// out of an interface the director is attached to. In FIB mode the
// program can only send to hops whose neighbour entry exists (it counts
// drop_no_neighbor otherwise), and nothing else on a director would make
// the kernel resolve them. Entries are "managed" (kernel 5.16+): the
// kernel re-probes them on its own. On older kernels a one-shot resolution
// is triggered instead, and the caller repeats it.
func (d *Dataplane) ResolveNeighbors(addrs []netip.Addr) error {
	d.linkMu.Lock()
	ifindexes := map[int]bool{}
	for name := range d.links {
		if iface, err := net.InterfaceByName(name); err == nil {
			ifindexes[iface.Index] = true
		}
	}
	d.linkMu.Unlock()

	seen := map[string]bool{}
	var errs []error
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		routes, err := netlink.RouteGet(a.AsSlice())
		if err == nil && len(routes) == 0 {
			err = errors.New("no route")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("route to %v: %w", a, err))
			continue
		}
		r := routes[0]
		if !ifindexes[r.LinkIndex] {
			continue // not reachable through an attached interface
		}
		next := net.IP(a.AsSlice())
		if r.Gw != nil {
			next = r.Gw
		}
		key := fmt.Sprintf("%d/%s", r.LinkIndex, next)
		if seen[key] {
			continue
		}
		seen[key] = true
		n := &netlink.Neigh{LinkIndex: r.LinkIndex, Family: unix.AF_INET, IP: next, State: netlink.NUD_NONE, FlagsExt: netlink.NTF_EXT_MANAGED}
		if err := netlink.NeighSet(n); err != nil {
			// Kernels before 5.16 have no managed entries: trigger one
			// resolution.
			n.FlagsExt, n.Flags = 0, netlink.NTF_USE
			if err := netlink.NeighSet(n); err != nil {
				errs = append(errs, fmt.Errorf("resolve neighbour %v: %w", next, err))
			}
		}
	}
	return errors.Join(errs...)
}
