//go:build !linux

package healthcheck

import (
	"context"
	"net/netip"
)

// gueProber fails every GUE check: raw ICMP sockets with ICMP_FILTER and
// tcx are Linux-only, like glb-redirect itself.
type gueProber struct{}

func newGUEProber(netip.Addr, func(string)) *gueProber { return &gueProber{} }

func (*gueProber) probe(context.Context, Check) result {
	return fail("GUE checks need Linux")
}

func (*gueProber) close() {}
