package redirect

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/glb-project/glb/bpf"
)

// loadObjects loads bpf/redirect.c into the kernel with self as this
// host's address (the invalid Addr means "the outer destination", GLB's
// own rule). The caller closes the objects.
func loadObjects(self netip.Addr) (*bpf.RedirectObjects, error) {
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
	return objs, nil
}
