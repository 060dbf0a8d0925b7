package healthcheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// gueProber runs GUE checks. Probes to remote backends go on the wire and
// share one raw ICMP socket, opened at the first probe; probes of a local
// address run in place (see the package documentation).
type gueProber struct {
	src     netip.Addr // inner (and outer) source; invalid: the route's
	demux   *demux
	outcome func(string) // counts an ICMP message by outcome

	mu      sync.Mutex
	raw     net.PacketConn
	closed  bool
	readers sync.WaitGroup

	localMu sync.Mutex
	local   map[netip.Addr]int // local address -> index in ifcs
	ifcs    []net.Interface
	localAt time.Time
}

func newGUEProber(src netip.Addr, outcome func(string)) *gueProber {
	var id [2]byte
	_, _ = rand.Read(id[:])
	return &gueProber{src: src, demux: newDemux(binary.BigEndian.Uint16(id[:])), outcome: outcome}
}

func (g *gueProber) probe(ctx context.Context, c Check) result {
	if ifcs, ok := g.localInterfaces(c.Backend); ok {
		return g.probeInPlace(c, ifcs)
	}
	return g.probeWire(ctx, c)
}

// probeWire sends the probe to the backend and waits for its echo reply
// on the raw socket.
func (g *gueProber) probeWire(ctx context.Context, c Check) result {
	if err := g.openRaw(); err != nil {
		return fail("%v", err)
	}
	var laddr *net.UDPAddr
	if g.src.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.src, 0))
	}
	conn, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.Backend, c.Port)))
	if err != nil {
		return fail("open udp socket: %s", reasonOf(ctx, err))
	}
	defer conn.Close()
	src := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()

	w := &waiter{backend: c.Backend, port: c.Port}
	_, _ = rand.Read(w.nonce[:])
	seq, err := g.demux.add(w)
	if err != nil {
		return fail("%v", err)
	}
	defer g.demux.remove(seq)
	pkt := appendProbe(make([]byte, 0, probeLen), src, c.Backend, probeID{id: g.demux.id, seq: seq, nonce: w.nonce})
	if _, err := conn.Write(pkt); err != nil {
		return fail("send probe: %s", reasonOf(ctx, err))
	}
	select {
	case r := <-w.done:
		return r
	case <-ctx.Done():
		return fail("timeout")
	}
}

// openRaw opens the shared raw ICMP socket and starts its reader, once.
func (g *gueProber) openRaw() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("checker stopped")
	}
	if g.raw != nil {
		return nil
	}
	laddr := "0.0.0.0"
	if g.src.IsValid() {
		laddr = g.src.String()
	}
	raw, err := net.ListenPacket("ip4:icmp", laddr)
	if err != nil {
		return fmt.Errorf("open raw ICMP socket for GUE checks: %w (run as root or grant CAP_NET_RAW)", err)
	}
	if err := filterICMP(raw); err != nil {
		raw.Close()
		return err
	}
	g.raw = raw
	g.readers.Add(1)
	go g.read(raw)
	return nil
}

// filterICMP makes the kernel drop every ICMP type but echo reply and
// destination unreachable before it queues them on the socket (ICMP_FILTER,
// raw(7)): a busy host's other ICMP never wakes the reader.
func filterICMP(c net.PacketConn) error {
	sc, err := c.(*net.IPConn).SyscallConn()
	if err != nil {
		return fmt.Errorf("raw ICMP socket: %w", err)
	}
	mask := ^uint32(1<<icmpEchoReply | 1<<icmpUnreachable)
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_RAW, unix.ICMP_FILTER, int(int32(mask)))
	}); err != nil {
		return fmt.Errorf("raw ICMP socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set ICMP_FILTER on the raw socket: %w", serr)
	}
	return nil
}

// read hands every message of the raw socket to the demultiplexer until
// the socket is closed.
func (g *gueProber) read(raw net.PacketConn) {
	defer g.readers.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := raw.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src, ok := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		if !ok {
			continue
		}
		g.outcome(g.demux.deliver(src.Unmap(), buf[:n]))
	}
}

func (g *gueProber) close() {
	g.mu.Lock()
	g.closed = true
	raw := g.raw
	g.raw = nil
	g.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
	g.readers.Wait()
}

// localInterfaces reports whether addr is assigned to this host (in the
// Checker's network namespace). If so it returns every interface, the one
// holding addr first. The answer is cached for a second.
func (g *gueProber) localInterfaces(addr netip.Addr) ([]net.Interface, bool) {
	g.localMu.Lock()
	defer g.localMu.Unlock()
	if g.local == nil || time.Since(g.localAt) > time.Second {
		g.local, g.localAt = map[netip.Addr]int{}, time.Now()
		g.ifcs, _ = net.Interfaces()
		for i, ifc := range g.ifcs {
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					g.local[p.Addr().Unmap()] = i
				}
			}
		}
	}
	own, ok := g.local[addr]
	if !ok {
		return nil, false
	}
	out := []net.Interface{g.ifcs[own]}
	for i, ifc := range g.ifcs {
		if i != own {
			out = append(out, ifc)
		}
	}
	return out, true
}

// tcx verdicts (include/uapi/linux/bpf.h, enum tcx_action_base).
const (
	tcxNext     = ^uint32(0) // -1: the next program, or pass
	tcxPass     = 0
	tcxDrop     = 2
	tcxRedirect = 7
)

// probeInPlace checks a backend address of this very host. A GUE packet to
// it would loop back over lo and never meet glb-redirect on the uplink
// (GLB issue 139), so instead the probe, framed as it would arrive, runs
// through the programs on an interface's tcx ingress. They must hand back
// the inner echo request, decapsulated and unchanged. The interface that
// holds the address is tried first; the others follow, for hosts whose
// address lives on lo or a dummy device while GUE comes in on an uplink.
func (g *gueProber) probeInPlace(c Check, ifcs []net.Interface) result {
	var failed []result
	for _, ifc := range ifcs {
		r, attached := g.runChain(c, ifc)
		if r.ok {
			return r
		}
		if attached {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		return failed[0]
	}
	return fail("this host is the backend, and no program on %s's tcx ingress (nor any other interface's) decapsulates GUE: is glb-redirect running?", ifcs[0].Name)
}

// runChain runs the probe through ifc's tcx ingress programs in order, as
// the kernel would. attached is false when ifc has none.
func (g *gueProber) runChain(c Check, ifc net.Interface) (r result, attached bool) {
	q, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fail("this host is the backend: list tcx programs on %s: %v", ifc.Name, err), true
	}
	if len(q.Programs) == 0 {
		return result{}, false
	}
	src := g.src
	if !src.IsValid() {
		src = c.Backend
	}
	var nonce [nonceLen]byte
	_, _ = rand.Read(nonce[:])
	in, want := inPlaceFrame(ifc.HardwareAddr, src, c.Backend, c.Port, probeID{id: g.demux.id, nonce: nonce})
	pkt := in
run:
	for _, ap := range q.Programs {
		verdict, out, name, err := runProgram(ap.ID, pkt)
		if err != nil {
			return fail("this host is the backend: run tcx program %d on %s: %v", ap.ID, ifc.Name, err), true
		}
		pkt = out
		switch verdict {
		case tcxNext: // the next program sees the packet; after the last, the stack
		case tcxPass:
			break run
		case tcxDrop:
			return fail("this host is the backend: tcx program %d (%s) on %s drops the GUE probe", ap.ID, name, ifc.Name), true
		case tcxRedirect:
			return fail("this host is the backend: tcx program %d (%s) on %s redirects the GUE probe instead of taking it", ap.ID, name, ifc.Name), true
		default:
			return fail("this host is the backend: tcx program %d (%s) on %s returns %d for the GUE probe", ap.ID, name, ifc.Name, int32(verdict)), true
		}
	}
	if !bytes.Equal(pkt, want) {
		return fail("this host is the backend, and the tcx programs on %s do not decapsulate the GUE probe: is glb-redirect running there?", ifc.Name), true
	}
	return pass(), true
}

// runProgram runs one attached program on pkt with BPF_PROG_TEST_RUN.
func runProgram(id ebpf.ProgramID, pkt []byte) (verdict uint32, out []byte, name string, err error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return 0, nil, "", err
	}
	defer prog.Close()
	if info, err := prog.Info(); err == nil {
		name = info.Name
	}
	opts := &ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt)+256)}
	verdict, err = prog.Run(opts)
	return verdict, opts.DataOut, name, err
}

// inPlaceFrame returns the Ethernet frame a GUE probe from src to dst
// would arrive in, and the frame glb-redirect makes of it: the same
// Ethernet header before the inner IPv4 packet.
func inPlaceFrame(mac net.HardwareAddr, src, dst netip.Addr, port uint16, p probeID) (in, want []byte) {
	eth := make([]byte, 14)
	copy(eth, mac)
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	payload := appendProbe(nil, src, dst, p)
	in = append([]byte(nil), eth...)
	in = appendIPv4(in, src, dst, protoUDP, 8+len(payload))
	in = binary.BigEndian.AppendUint16(in, 0x8000|p.seq)
	in = binary.BigEndian.AppendUint16(in, port)
	in = binary.BigEndian.AppendUint16(in, uint16(8+len(payload)))
	in = append(in, 0, 0) // no UDP checksum, as GLB's director sends
	in = append(in, payload...)
	want = append(append([]byte(nil), eth...), payload[gueHeaderLen:]...)
	return in, want
}
