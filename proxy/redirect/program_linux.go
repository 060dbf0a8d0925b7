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
	spec, err := bpf.LoadRedirect()
	if err != nil {
		return nil, fmt.Errorf("load redirect spec: %w", err)
	}
	var selfBE [4]byte // network byte order, as the packet carries it
	if self.IsValid() {
		if !self.Is4() {
			return nil, fmt.Errorf("self address %s is not IPv4: GUE's outer header is IPv4 only", self)
		}
		selfBE = self.As4()
	}
	if err := spec.Variables[bpf.RedirectVarCfgSelfIpv4].Set(selfBE); err != nil {
		return nil, fmt.Errorf("set self address: %w", err)
	}
	if len(trusted) > int(spec.Maps[bpf.RedirectMapRedirectTrusted].MaxEntries) {
		return nil, fmt.Errorf("%d trusted GUE source prefixes, at most %d fit: list whole subnets instead of hosts",
			len(trusted), spec.Maps[bpf.RedirectMapRedirectTrusted].MaxEntries)
	}
	if len(trusted) > 0 {
		if err := spec.Variables[bpf.RedirectVarCfgTrustedOnly].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set trusted-only: %w", err)
		}
	}
	var n uint32
	if err := spec.Variables[bpf.RedirectVarOutcomeLen].Get(&n); err != nil {
		return nil, fmt.Errorf("read outcome count: %w", err)
	}
	if int(n) != len(outcomeLabels) {
		return nil, fmt.Errorf("redirect object has %d outcomes, this build knows %d: regenerate bpf (make generate)", n, len(outcomeLabels))
	}

	objs := new(bpf.RedirectObjects)
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load redirect program: %w (verifier log:\n%+v)", err, ve)
		}
		return nil, fmt.Errorf("load redirect program: %w", err)
	}
	for _, p := range trusted {
		if !p.Addr().Is4() {
			objs.Close()
			return nil, fmt.Errorf("trusted GUE source %s is not IPv4: GUE's outer header is IPv4 only", p)
		}
		a := p.Masked().Addr().As4()
		// The key holds the address as the packet carries it.
		key := bpf.RedirectTrustedKey{Prefixlen: uint32(p.Bits()), Addr: binary.NativeEndian.Uint32(a[:])}
		if err := objs.RedirectTrusted.Put(key, uint8(1)); err != nil {
			objs.Close()
			return nil, fmt.Errorf("add trusted GUE source %s: %w", p, err)
		}
	}
	return objs, nil
}
