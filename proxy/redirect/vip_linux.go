package redirect

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func hostAddr(v netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: v.AsSlice(), Mask: net.CIDRMask(v.BitLen(), v.BitLen())}}
}

// addVIPs puts every VIP on lo that is not there yet. A VIP that was
// already there is not the agent's, and stays when it exits. Each VIP is
// recorded in the state file before it is added, so a crash in between
// never leaves a VIP of the agent's unrecorded; a recorded VIP that never
// made it to lo is dropped by the next agent's adoptState.
func (a *Agent) addVIPs() error {
	lo, err := a.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	have, err := a.loAddrs(lo)
	if err != nil {
		return err
	}
	for _, v := range a.cfg.VIPs {
		if a.ownsVIP(v) {
			continue
		}
		if have[v] {
			a.foreignVIP(v)
			continue
		}
		a.vips = append(a.vips, v)
		unrecord := func() { a.vips = slices.DeleteFunc(a.vips, func(o netip.Addr) bool { return o == v }) }
		if err := a.saveState(); err != nil {
			unrecord()
			return err
		}
		if a.recorded != nil {
			a.recorded(v.String())
		}
		err := a.nl.AddrAdd(lo, hostAddr(v))
		if errors.Is(err, unix.EEXIST) { // someone added it since the list above
			unrecord()
			a.foreignVIP(v)
			continue
		}
		if err != nil {
			unrecord()
			return fmt.Errorf("add VIP %s to lo: %w", v, err)
		}
		a.log.Info("VIP added", "vip", hostPrefix(v), "dev", "lo")
	}
	return nil
}

func (a *Agent) foreignVIP(v netip.Addr) {
	if !a.foreign[v] {
		a.log.Info("VIP already on lo; it stays there on exit", "vip", v)
		a.foreign[v] = true
	}
}

func (a *Agent) ownsVIP(v netip.Addr) bool { return slices.Contains(a.vips, v) }

// loAddrs is the set of addresses on lo.
func (a *Agent) loAddrs(lo netlink.Link) (map[netip.Addr]bool, error) {
	addrs, err := a.nl.AddrList(lo, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of lo: %w", err)
	}
	have := map[netip.Addr]bool{}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok {
			have[ip.Unmap()] = true
		}
	}
	return have, nil
}

// missingVIPs lists the agent's VIPs that someone removed from lo.
func (a *Agent) missingVIPs() ([]netip.Addr, error) {
	lo, err := a.nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo: %w", err)
	}
	have, err := a.loAddrs(lo)
	if err != nil {
		return nil, err
	}
	var missing []netip.Addr
	for _, v := range a.vips {
		if !have[v] {
			missing = append(missing, v)
		}
	}
	return missing, nil
}

// removeVIPs takes vs off lo and returns the ones it could not remove:
// they stay the agent's, and in the state file, for a later attempt. A
// VIP someone else removed already counts as removed.
func (a *Agent) removeVIPs(vs []netip.Addr) (left []netip.Addr, err error) {
	if len(vs) == 0 {
		return nil, nil
	}
	lo, err := a.nl.LinkByName("lo")
	if err != nil {
		return vs, fmt.Errorf("find lo: %w", err)
	}
	var errs []error
	for _, v := range vs {
		err := a.nl.AddrDel(lo, hostAddr(v))
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			a.log.Warn("VIP was already gone from lo", "vip", hostPrefix(v))
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove VIP %s from lo: %w", v, err))
			left = append(left, v)
			continue
		}
		a.log.Info("VIP removed", "vip", hostPrefix(v), "dev", "lo")
	}
	return left, joinErrs(errs)
}

func hostPrefix(v netip.Addr) netip.Prefix { return netip.PrefixFrom(v, v.BitLen()) }
