//go:build !linux

package redirect

import (
	"errors"
	"net/netip"
)

// errNotLinux is what every Agent method returns off Linux: tcx, BPF and
// the sysctls the agent sets exist only there.
var errNotLinux = errors.New("glb-redirect runs on Linux only")

// Agent is glb-redirect running on a proxy host; see agent_linux.go.
type Agent struct{}

// Start fails off Linux.
func Start(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return nil, errNotLinux
}

// Self is the zero Addr off Linux.
func (*Agent) Self() netip.Addr { return netip.Addr{} }

// Reconcile fails off Linux.
func (*Agent) Reconcile() error { return errNotLinux }

// Counters fails off Linux.
func (*Agent) Counters() (map[string]uint64, error) { return nil, errNotLinux }

// Close does nothing off Linux.
func (*Agent) Close() error { return nil }

// Leave fails off Linux.
func (*Agent) Leave() error { return errNotLinux }

// Cleanup fails off Linux.
func Cleanup(cfg Config) (bool, error) { return false, errNotLinux }
