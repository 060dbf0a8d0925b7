package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/glb-project/glb/bpf"
)

// loadObjects loads bpf/redirect.c into the kernel with self as this
// host's address (the invalid Addr means "the outer destination", GLB's
// own rule) and trusted as the outer source prefixes GUE may come from
// (none: any source). The caller closes the objects.
func loadObjects(self netip.Addr, trusted []netip.Prefix) (*bpf.RedirectObjects, error) {
	objs, _, err := loadPinnedObjects(self, trusted, "")
	return objs, err
}

// loadPinnedObjects is loadObjects with the counters map pinned in
// pinPath (unless pinPath is empty): a map already pinned there is
// reused, so the counters of an earlier agent's program go on counting;
// otherwise the map is created and pinned. A pinned map of another layout
// (an agent whose build counts other outcomes) is not reused: the objects
// then get a fresh, unpinned map and stale reports it, for the caller to
// pin once the old program is gone from the link.
//
// The trusted-sources map is never pinned: each program gets its own, filled
// before it is attached or swapped in, so the swap changes the program and
// its trusted prefixes at once.
func loadPinnedObjects(self netip.Addr, trusted []netip.Prefix, pinPath string) (_ *bpf.RedirectObjects, stale bool, err error) {
	spec, err := bpf.LoadRedirect()
	if err != nil {
		return nil, false, fmt.Errorf("load redirect spec: %w", err)
	}
	var selfBE [4]byte // network byte order, as the packet carries it
	if self.IsValid() {
		if !self.Is4() {
			return nil, false, fmt.Errorf("self address %s is not IPv4: GUE's outer header is IPv4 only", self)
		}
		selfBE = self.As4()
	}
	if err := spec.Variables[bpf.RedirectVarCfgSelfIpv4].Set(selfBE); err != nil {
		return nil, false, fmt.Errorf("set self address: %w", err)
	}
	if len(trusted) > int(spec.Maps[bpf.RedirectMapRedirectTrusted].MaxEntries) {
		return nil, false, fmt.Errorf("%d trusted GUE source prefixes, at most %d fit: list whole subnets instead of hosts",
			len(trusted), spec.Maps[bpf.RedirectMapRedirectTrusted].MaxEntries)
	}
	if len(trusted) > 0 {
		if err := spec.Variables[bpf.RedirectVarCfgTrustedOnly].Set(uint8(1)); err != nil {
			return nil, false, fmt.Errorf("set trusted-only: %w", err)
		}
	}
	var n uint32
	if err := spec.Variables[bpf.RedirectVarOutcomeLen].Get(&n); err != nil {
		return nil, false, fmt.Errorf("read outcome count: %w", err)
	}
	if int(n) != len(outcomeLabels) {
		return nil, false, fmt.Errorf("redirect object has %d outcomes, this build knows %d: regenerate bpf (make generate)", n, len(outcomeLabels))
	}

	opts := &ebpf.CollectionOptions{}
	if pinPath != "" {
		spec.Maps[bpf.RedirectMapRedirectStats].Pinning = ebpf.PinByName
		opts.Maps.PinPath = pinPath
	}
	objs := new(bpf.RedirectObjects)
	err = spec.LoadAndAssign(objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		stale = true
		spec.Maps[bpf.RedirectMapRedirectStats].Pinning = ebpf.PinNone
		err = spec.LoadAndAssign(objs, nil)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, false, fmt.Errorf("load redirect program: %w (verifier log:\n%+v)", err, ve)
		}
		return nil, false, fmt.Errorf("load redirect program: %w", err)
	}
	for _, p := range trusted {
		if !p.Addr().Is4() {
			objs.Close()
			return nil, false, fmt.Errorf("trusted GUE source %s is not IPv4: GUE's outer header is IPv4 only", p)
		}
		a := p.Masked().Addr().As4()
		// The key holds the address as the packet carries it.
		key := bpf.RedirectTrustedKey{Prefixlen: uint32(p.Bits()), Addr: binary.NativeEndian.Uint32(a[:])}
		if err := objs.RedirectTrusted.Put(key, uint8(1)); err != nil {
			objs.Close()
			return nil, false, fmt.Errorf("add trusted GUE source %s: %w", p, err)
		}
	}
	return objs, stale, nil
}
