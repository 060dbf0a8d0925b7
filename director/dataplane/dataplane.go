package dataplane

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/glb-project/glb/bpf"
)

// Config says how to load the director.
type Config struct {
	// PinPath is a directory on a bpffs (see internal/bpffs) where the maps
	// and XDP links are pinned. Maps already pinned there are reused.
	// Empty means nothing is pinned: the maps live as long as the
	// Dataplane (tests).
	PinPath string
	// SrcIP is the outer source address of every GUE packet. Required,
	// IPv4.
	SrcIP netip.Addr
	// GatewayMAC, if set, is the destination MAC of every GUE packet,
	// and the kernel FIB is not consulted. Otherwise each packet's next
	// hop comes from a FIB lookup of its primary hop. Either way a GUE
	// packet larger than the MTU it would leave by (the interface's with
	// a gateway, the route's otherwise) is dropped as drop_too_big.
	GatewayMAC net.HardwareAddr
	// Interfaces are the interfaces this director is about to attach
	// to (--iface). With a PinPath, Open detaches and unpins the XDP
	// links an earlier glb-director pinned for any other interface (one
	// dropped from --iface across a --keep-attached restart), logging
	// each. Nil leaves every pinned link alone.
	Interfaces []string
	// Log receives notices (takeover of pinned objects, cleanup). Nil
	// discards them.
	Log *slog.Logger
}

func (c *Config) validate() error {
	if !c.SrcIP.Is4() {
		return fmt.Errorf("source IP %v: the outer header of GUE is IPv4, give the director's IPv4 address", c.SrcIP)
	}
	if c.GatewayMAC != nil && len(c.GatewayMAC) != 6 {
		return fmt.Errorf("gateway MAC %v: want a 6-byte Ethernet address", c.GatewayMAC)
	}
	return nil
}

// Mode is how an XDP program is attached to an interface.
type Mode string

// XDP attach modes.
const (
	ModeAuto    Mode = "auto"    // native if the driver supports it, else generic
	ModeNative  Mode = "native"  // in the driver; fails if unsupported
	ModeGeneric Mode = "generic" // in the stack (SKB mode): works everywhere, slower
)

// ParseMode parses an --xdp-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNative, ModeGeneric:
		return m, nil
	}
	return "", fmt.Errorf("xdp mode %q: use auto, native or generic", s)
}

func (m Mode) flags() link.XDPAttachFlags {
	switch m {
	case ModeNative:
		return link.XDPDriverMode
	case ModeGeneric:
		return link.XDPGenericMode
	}
	return 0
}

// Dataplane is the loaded director program and its maps.
type Dataplane struct {
	cfg       Config
	log       *slog.Logger
	objs      bpf.DirectorObjects
	innerSpec *ebpf.MapSpec
	ncpu      int

	linkMu sync.Mutex
	links  map[string]link.Link // by interface name

	mu    sync.Mutex // guards the table state below (Apply, collector)
	state state
}

// Open loads the director program. With a PinPath it reuses maps pinned
// there by an earlier glb-director, so a new daemon starts from the tables
// the running program uses, and pins the maps it creates.
func Open(cfg Config) (*Dataplane, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec, err := bpf.LoadDirector()
	if err != nil {
		return nil, fmt.Errorf("load director spec: %w", err)
	}
	if err := setConstants(spec, &cfg); err != nil {
		return nil, err
	}
	inner := spec.Maps[bpf.DirectorMapGlbTables].InnerMap
	if inner == nil {
		return nil, errors.New("load director spec: glb_tables has no inner map spec")
	}
	opts := &ebpf.CollectionOptions{}
	if cfg.PinPath == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	} else {
		if err := os.MkdirAll(cfg.PinPath, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
		opts.Maps.PinPath = cfg.PinPath
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count possible CPUs: %w", err)
	}

	d := &Dataplane{cfg: cfg, log: log, innerSpec: inner.Copy(), ncpu: ncpu, links: map[string]link.Link{}}
	if err := spec.LoadAndAssign(&d.objs, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			log.Error("verifier rejected the director program", "log", fmt.Sprintf("%+v", ve))
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load director: %w (maps pinned in %s come from an incompatible glb-director: remove that directory, which detaches the old program, and start again)", err, cfg.PinPath)
		}
		return nil, fmt.Errorf("load director: %w", err)
	}
	d.state.init()
	if cfg.PinPath != "" && cfg.Interfaces != nil {
		if err := d.releaseLinks(cfg.Interfaces); err != nil {
			d.objs.Close()
			return nil, err
		}
	}
	if err := d.adopt(); err != nil {
		d.objs.Close()
		return nil, err
	}
	return d, nil
}

func setConstants(spec *ebpf.CollectionSpec, cfg *Config) error {
	set := func(name string, v any) error {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("load director spec: variable %s is missing", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	if err := set(bpf.DirectorVarCfgSrcIp, cfg.SrcIP.As4()); err != nil {
		return err
	}
	if cfg.GatewayMAC != nil {
		if err := set(bpf.DirectorVarCfgUseGateway, uint8(1)); err != nil {
			return err
		}
		if err := set(bpf.DirectorVarCfgGatewayMac, [6]byte(cfg.GatewayMAC)); err != nil {
			return err
		}
	}
	return nil
}

// Program returns the director's XDP program (for tests and benchmarks:
// Program().Run).
func (d *Dataplane) Program() *ebpf.Program { return d.objs.GlbDirector }

// Attach attaches the program to an interface. If a link for it is
// pinned (an earlier glb-director left it attached), the program is swapped
// into that link atomically instead, so no packet misses the director.
func (d *Dataplane) Attach(ifname string, mode Mode) error {
	d.linkMu.Lock()
	defer d.linkMu.Unlock()
	if _, ok := d.links[ifname]; ok {
		return fmt.Errorf("attach to %s: already attached", ifname)
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", ifname, err)
	}
	pin := d.linkPin(ifname)
	if pin != "" {
		l, err := link.LoadPinnedLink(pin, nil)
		switch {
		case err == nil:
			if err := d.takeOver(l, iface.Index); err != nil {
				l.Close()
				d.log.Warn("pinned XDP link unusable, attaching afresh", "iface", ifname, "err", err)
				if err := os.Remove(pin); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("attach to %s: remove stale pinned link: %w", ifname, err)
				}
			} else {
				d.log.Info("took over pinned XDP link", "iface", ifname, "pin", pin)
				d.links[ifname] = l
				return nil
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("attach to %s: load pinned link %s: %w", ifname, pin, err)
		}
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.GlbDirector, Interface: iface.Index, Flags: mode.flags()})
	if err != nil {
		return fmt.Errorf("attach XDP (%s mode) to %s: %w", mode, ifname, err)
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			l.Close()
			return fmt.Errorf("attach to %s: pin link: %w", ifname, err)
		}
	}
	d.links[ifname] = l
	return nil
}

// takeOver swaps the program into a pinned link, after checking that the
// link is still attached to the interface.
func (d *Dataplane) takeOver(l link.Link, ifindex int) error {
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("link info: %w", err)
	}
	xdp := info.XDP()
	if xdp == nil || int(xdp.Ifindex) != ifindex {
		return errors.New("pinned link is not an XDP link on this interface")
	}
	if err := l.Update(d.objs.GlbDirector); err != nil {
		return fmt.Errorf("update pinned link: %w", err)
	}
	return nil
}

// releaseLinks detaches and unpins the XDP links pinned under PinPath
// for interfaces not in keep (all of them for a nil keep).
func (d *Dataplane) releaseLinks(keep []string) error {
	pins, err := filepath.Glob(filepath.Join(d.cfg.PinPath, "link_*"))
	if err != nil {
		return fmt.Errorf("list pinned links: %w", err)
	}
	var errs []error
	for _, pin := range pins {
		ifname := strings.TrimPrefix(filepath.Base(pin), "link_")
		if keep != nil && slices.Contains(keep, ifname) {
			continue
		}
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			// Unpinning drops the pin's reference, closing drops ours:
			// the kernel then detaches the program.
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin link of %s: %w", ifname, err))
			}
			if err := l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach link of %s: %w", ifname, err))
			}
		} else if err := os.Remove(pin); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pinned link %s: %w", pin, err))
		}
		d.log.Info("detached the director from an interface no longer configured", "iface", ifname, "pin", pin)
	}
	return errors.Join(errs...)
}

func (d *Dataplane) linkPin(ifname string) string {
	if d.cfg.PinPath == "" {
		return ""
	}
	return filepath.Join(d.cfg.PinPath, "link_"+ifname)
}

// Interfaces returns the names of the interfaces the program is attached to.
func (d *Dataplane) Interfaces() []string {
	d.linkMu.Lock()
	defer d.linkMu.Unlock()
	names := make([]string, 0, len(d.links))
	for n := range d.links {
		names = append(names, n)
	}
	return names
}

// Close releases the program and maps but leaves pinned links and maps in
// place: the director keeps forwarding with the last table, and the next
// Open + Attach takes over without a gap.
func (d *Dataplane) Close() error {
	d.linkMu.Lock()
	var errs []error
	for name, l := range d.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link on %s: %w", name, err))
		}
		delete(d.links, name)
	}
	d.linkMu.Unlock()
	if err := d.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close director objects: %w", err))
	}
	return errors.Join(errs...)
}

// Detach detaches the program from every interface, removes the pinned
// links and maps, and closes everything: a clean stop.
func (d *Dataplane) Detach() error {
	var errs []error
	d.linkMu.Lock()
	for name, l := range d.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link on %s: %w", name, err))
		}
	}
	d.linkMu.Unlock()
	for _, m := range []*ebpf.Map{d.objs.GlbBinds, d.objs.GlbPorts, d.objs.GlbTables, d.objs.GlbEnds, d.objs.GlbBindStats} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin map: %w", err))
		}
	}
	errs = append(errs, d.Close())
	if d.cfg.PinPath != "" {
		// Links pinned for interfaces this process never attached to.
		errs = append(errs, d.releaseLinks(nil))
		// Only removes the directory if nothing else is pinned there.
		if err := os.Remove(d.cfg.PinPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("pin directory not removed", "path", d.cfg.PinPath, "err", err)
		}
	}
	return errors.Join(errs...)
}
