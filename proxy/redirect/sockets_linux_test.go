package redirect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/nstest"
	"golang.org/x/sys/unix"
)

// The socket branches of the program, against real sockets of the test
// namespace: BPF_PROG_TEST_RUN looks sockets up in the namespace of the
// thread that runs it, and progEnv.run runs it inside e.ns.

// listen opens a TCP listener on addr inside the namespace.
func (e *progEnv) listen(tb testing.TB, addr netip.AddrPort) net.Listener {
	tb.Helper()
	var l net.Listener
	if err := e.ns.Do(tb, func() error {
		var err error
		l, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		tb.Fatalf("listen on %s: %v", addr, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// connect makes a real connection from local to the listener, over lo,
// and returns the client and server ends.
func (e *progEnv) connect(tb testing.TB, l net.Listener, local netip.Addr) (client, server net.Conn) {
	tb.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	if err := e.ns.Do(tb, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice()}, Timeout: 5 * time.Second}
		var err error
		client, err = d.Dial("tcp", l.Addr().String())
		return err
	}); err != nil {
		tb.Fatalf("connect to %s: %v", l.Addr(), err)
	}
	tb.Cleanup(func() { client.Close() })
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		tb.Fatal("accept timed out")
	}
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { server.Close() })
	return client, server
}

// procTCPState returns the state (as /proc/net/tcp prints it: 01
// ESTABLISHED, 03 SYN_RECV, 06 TIME_WAIT, 0A LISTEN) of the socket with
// these local and remote ends, or "" when there is none.
func (e *progEnv) procTCPState(tb testing.TB, local, remote netip.AddrPort) string {
	tb.Helper()
	file := "/proc/thread-self/net/tcp"
	if local.Addr().Is6() {
		file += "6"
	}
	var b []byte
	if err := e.ns.Do(tb, func() error {
		var err error
		b, err = os.ReadFile(file)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	want := procAddr(local) + " " + procAddr(remote)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1]+" "+f[2] == want {
			return f[3]
		}
	}
	return ""
}

// procAddr formats an address as /proc/net/tcp does: each 32-bit word of
// the address in host (little-endian) order, then the port.
func procAddr(ap netip.AddrPort) string {
	var sb strings.Builder
	a := ap.Addr().AsSlice()
	for i := 0; i < len(a); i += 4 {
		fmt.Fprintf(&sb, "%08X", binary.LittleEndian.Uint32(a[i:i+4]))
	}
	fmt.Fprintf(&sb, ":%04X", ap.Port())
	return sb.String()
}

func (e *progEnv) waitState(tb testing.TB, local, remote netip.AddrPort, states ...string) {
	tb.Helper()
	nstest.WaitFor(tb, 5*time.Second, fmt.Sprintf("socket %s<-%s in state %v", local, remote, states), func() bool {
		st := e.procTCPState(tb, local, remote)
		for _, s := range states {
			if st == s {
				return true
			}
		}
		return false
	})
}

// rawSender sends hand-made IP packets from inside the namespace, with any
// source address: SYNs from remote clients whose replies leave through
// cl0 and never come back.
func (e *progEnv) rawSender(tb testing.TB) func(pkt []byte) {
	tb.Helper()
	var fd4, fd6 int
	if err := e.ns.Do(tb, func() error {
		var err error
		if fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); err != nil {
			return err
		}
		// IPPROTO_RAW implies IPV6_HDRINCL for IPv6 too.
		fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		tb.Fatalf("raw socket: %v", err)
	}
	tb.Cleanup(func() { unix.Close(fd4); unix.Close(fd6) })
	return func(pkt []byte) {
		var err error
		if pkt[0]>>4 == 6 {
			var dst [16]byte
			copy(dst[:], pkt[24:40])
			err = unix.Sendto(fd6, pkt, 0, &unix.SockaddrInet6{Addr: dst})
		} else {
			var dst [4]byte
			copy(dst[:], pkt[16:20])
			err = unix.Sendto(fd4, pkt, 0, &unix.SockaddrInet4{Addr: dst})
		}
		if err != nil {
			tb.Fatalf("send raw packet: %v", err)
		}
	}
}

// capture reads IP packets leaving through cl0, where replies to remote
// clients go.
type capture struct{ fd int }

func (e *progEnv) capture(tb testing.TB) *capture {
	tb.Helper()
	c := &capture{}
	if err := e.ns.Do(tb, func() error {
		ifi, err := net.InterfaceByName("cl0")
		if err != nil {
			return err
		}
		// Only ETH_P_ALL sockets see outgoing packets.
		proto := htons(unix.ETH_P_ALL)
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(proto))
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index})
	}); err != nil {
		tb.Fatalf("capture on cl0: %v", err)
	}
	tb.Cleanup(func() { unix.Close(c.fd) })
	return c
}

// synAck waits for the SYN-ACK the stack sends to client and returns its
// sequence number (the cookie, when the listener uses cookies).
func (c *capture) synAck(tb testing.TB, client netip.AddrPort) uint32 {
	tb.Helper()
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			tb.Fatalf("wait for the SYN-ACK to %s: %v", client, err)
		}
		p := buf[:n]
		var th []byte
		var dst netip.Addr
		switch {
		case n >= 40 && p[0]>>4 == 4 && p[9] == protoTCP:
			th = p[int(p[0]&0xf)*4:]
			dst, _ = netip.AddrFromSlice(p[16:20])
		case n >= 60 && p[0]>>4 == 6 && p[6] == protoTCP:
			th = p[40:]
			dst, _ = netip.AddrFromSlice(p[24:40])
		default:
			continue
		}
		if dst == client.Addr() && binary.BigEndian.Uint16(th[2:]) == client.Port() && th[13]&(tcpSYN|tcpACK) == tcpSYN|tcpACK {
			return binary.BigEndian.Uint32(th[4:])
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func TestProgramSocketLookups(t *testing.T) {
	e := newProgEnv(t)
	send := e.rawSender(t)
	director := gueOuter{src: directorIP, dst: selfIP}

	// wrap sends the client's packet through the director to this host,
	// with peerIP as the second chance.
	wrap := func(inner []byte) []byte { return fromDirector(gueHdr{hops: hops1}, inner) }
	wantLocal := func(t *testing.T, inner []byte, outcome string) {
		t.Helper()
		verdict, out, got := e.run(t, wrap(inner))
		if verdict != verdictPass || got != outcome || !bytes.Equal(out, decapsulated(inner)) {
			t.Errorf("got verdict %#x outcome %s\nout  %x\nwant verdict %#x outcome %s\nout  %x", verdict, got, out, uint32(verdictPass), outcome, decapsulated(inner))
		}
	}
	wantForward := func(t *testing.T, inner []byte) {
		t.Helper()
		verdict, out, got := e.run(t, wrap(inner))
		want := forwarded(gueHdr{hops: hops1}, director, inner, peerIP)
		if verdict != verdictRedirect || got != "forwarded_to_alternate" || !bytes.Equal(out, want) {
			t.Errorf("got verdict %#x outcome %s\nout  %x\nwant a redirect to %s\nout  %x", verdict, got, out, peerIP, want)
		}
	}

	t.Run("an ACK for a port with only a listener goes to the next hop", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "1")
		e.listen(t, netip.AddrPortFrom(vip4, 8001))
		wantForward(t, v4tcp(remote, vip4, 41000, 8001, ackSeg))
		wantForward(t, v4tcp(localClient, vip4, 41000, 8001, ackSeg))
	})

	t.Run("a listener answering with cookies does not take an ACK without one", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "2")
		e.listen(t, netip.AddrPortFrom(vip4, 8002))
		wantForward(t, v4tcp(remote, vip4, 41000, 8002, ackSeg))
	})

	t.Run("a packet of an established connection is taken here", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "1")
		l := e.listen(t, netip.AddrPortFrom(vip4, 8003))
		client, _ := e.connect(t, l, localClient)
		cport := uint16(client.LocalAddr().(*net.TCPAddr).Port)
		wantLocal(t, v4tcp(localClient, vip4, cport, 8003, ackSeg), "accepted_established")
		// The same ports from another client are someone else's flow.
		wantForward(t, v4tcp(remote, vip4, cport, 8003, ackSeg))

		t.Run("and so is frag-needed about it", func(t *testing.T) {
			wantLocal(t, fragNeeded(peerIP, vip4, localClient, protoTCP, 8003, cport), "accepted_established")
		})
	})

	t.Run("a packet of an established IPv6 connection is taken here", func(t *testing.T) {
		l := e.listen(t, netip.AddrPortFrom(vip6, 8004))
		client, _ := e.connect(t, l, localClnt6)
		cport := uint16(client.LocalAddr().(*net.TCPAddr).Port)
		wantLocal(t, v6tcp(localClnt6, vip6, cport, 8004, ackSeg), "accepted_established")
		wantForward(t, v6tcp(remote6, vip6, cport, 8004, ackSeg))

		t.Run("and so is packet-too-big about it", func(t *testing.T) {
			wantLocal(t, packetTooBig(remote6, vip6, localClnt6, protoTCP, 8004, cport), "accepted_established")
		})
		t.Run("and so is one behind hop-by-hop and destination options", func(t *testing.T) {
			wantLocal(t, v6tcpExt(localClnt6, vip6, cport, 8004, ackSeg, hopByHop(), destOpts()), "accepted_established")
			wantForward(t, v6tcpExt(remote6, vip6, cport, 8004, ackSeg, hopByHop(), destOpts()))
		})
		t.Run("and so is its first fragment, and a later one stays too", func(t *testing.T) {
			first, rest := v6tcpFrags(localClnt6, vip6, cport, 8004, ackSeg, 32, 77, hopByHop())
			wantLocal(t, first, "accepted_established")
			wantLocal(t, rest, "accepted_fragment")
			first, _ = v6tcpFrags(remote6, vip6, cport, 8004, ackSeg, 32, 78, hopByHop())
			wantForward(t, first)
		})
	})

	t.Run("a packet of a half-closed connection is taken here", func(t *testing.T) {
		l := e.listen(t, netip.AddrPortFrom(vip4, 8005))
		client, server := e.connect(t, l, localClient)
		cport := uint16(client.LocalAddr().(*net.TCPAddr).Port)
		server.(*net.TCPConn).CloseWrite()
		e.waitState(t, netip.AddrPortFrom(vip4, 8005), netip.AddrPortFrom(localClient, cport), "04", "05") // FIN_WAIT1 or FIN_WAIT2
		wantLocal(t, v4tcp(localClient, vip4, cport, 8005, ackSeg), "accepted_established")
	})

	t.Run("a packet for a TIME_WAIT socket is taken here", func(t *testing.T) {
		l := e.listen(t, netip.AddrPortFrom(vip4, 8006))
		client, server := e.connect(t, l, localClient)
		cport := uint16(client.LocalAddr().(*net.TCPAddr).Port)
		// The server closes first, so its end lingers in TIME_WAIT.
		server.Close()
		if _, err := io.Copy(io.Discard, client); err != nil {
			t.Fatal(err)
		}
		client.Close()
		e.waitState(t, netip.AddrPortFrom(vip4, 8006), netip.AddrPortFrom(localClient, cport), "06")
		wantLocal(t, v4tcp(localClient, vip4, cport, 8006, tcpOpts{flags: tcpACK | tcpFIN, seq: 5, ack: 6}), "accepted_time_wait")
	})

	t.Run("a packet for a request socket (half-open) is taken here", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "1")
		e.listen(t, netip.AddrPortFrom(vip4, 8007))
		client := netip.AddrPortFrom(remote, 42007)
		send(v4tcp(remote, vip4, client.Port(), 8007, synSeg))
		e.waitState(t, netip.AddrPortFrom(vip4, 8007), client, "03")
		wantLocal(t, v4tcp(remote, vip4, client.Port(), 8007, tcpOpts{flags: tcpACK, seq: synSeg.seq + 1, ack: 1}), "accepted_syn_recv")
	})

	t.Run("an ACK with a valid SYN cookie is taken here", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "2")
		e.listen(t, netip.AddrPortFrom(vip4, 8008))
		capt := e.capture(t)
		client := netip.AddrPortFrom(remote, 42008)
		send(v4tcp(remote, vip4, client.Port(), 8008, synSeg))
		cookie := capt.synAck(t, client)
		if st := e.procTCPState(t, netip.AddrPortFrom(vip4, 8008), client); st != "" {
			t.Fatalf("the listener kept state %s for a cookie SYN", st)
		}
		ack := tcpOpts{flags: tcpACK, seq: synSeg.seq + 1, ack: cookie + 1}
		wantLocal(t, v4tcp(remote, vip4, client.Port(), 8008, ack), "accepted_syn_cookie")

		t.Run("and one with a wrong cookie goes on", func(t *testing.T) {
			bad := ack
			bad.ack ^= 0x00ff0000 // the low bits carry the MSS index: any of four is valid
			wantForward(t, v4tcp(remote, vip4, client.Port(), 8008, bad))
		})
		t.Run("and so does a RST carrying the cookie", func(t *testing.T) {
			rst := ack
			rst.flags = tcpACK | tcpRST
			wantForward(t, v4tcp(remote, vip4, client.Port(), 8008, rst))
		})
	})

	t.Run("a packet for an IPv6 request socket is taken here", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "1")
		e.listen(t, netip.AddrPortFrom(vip6, 8009))
		client := netip.AddrPortFrom(remote6, 42009)
		send(v6tcp(remote6, vip6, client.Port(), 8009, synSeg))
		e.waitState(t, netip.AddrPortFrom(vip6, 8009), client, "03")
		wantLocal(t, v6tcp(remote6, vip6, client.Port(), 8009, tcpOpts{flags: tcpACK, seq: synSeg.seq + 1, ack: 1}), "accepted_syn_recv")
	})

	t.Run("an IPv6 ACK with a valid SYN cookie is taken here", func(t *testing.T) {
		e.sysctl(t, "net/ipv4/tcp_syncookies", "2")
		e.listen(t, netip.AddrPortFrom(vip6, 8010))
		capt := e.capture(t)
		client := netip.AddrPortFrom(remote6, 42010)
		send(v6tcp(remote6, vip6, client.Port(), 8010, synSeg))
		cookie := capt.synAck(t, client)
		ack := tcpOpts{flags: tcpACK, seq: synSeg.seq + 1, ack: cookie + 1}
		wantLocal(t, v6tcp(remote6, vip6, client.Port(), 8010, ack), "accepted_syn_cookie")
		bad := ack
		bad.ack ^= 0x00ff0000 // the low bits carry the MSS index: any of four is valid
		wantForward(t, v6tcp(remote6, vip6, client.Port(), 8010, bad))

		t.Run("and so is one behind a hop-by-hop header", func(t *testing.T) {
			wantLocal(t, v6tcpExt(remote6, vip6, client.Port(), 8010, ack, hopByHop()), "accepted_syn_cookie")
			wantForward(t, v6tcpExt(remote6, vip6, client.Port(), 8010, bad, hopByHop()))
		})
	})
}
