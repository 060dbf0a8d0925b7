package redirect

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// readPcap returns the frames of a classic little-endian pcap file.
func readPcap(tb testing.TB, name string) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		tb.Fatalf("%s: not a little-endian Ethernet pcap", name)
	}
	var frames [][]byte
	for b = b[24:]; len(b) >= 16; {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < 16+n {
			tb.Fatalf("%s: truncated record", name)
		}
		frames = append(frames, b[16:16+n])
		b = b[16+n:]
	}
	return frames
}

func onePacket(tb testing.TB, name string) []byte {
	tb.Helper()
	f := readPcap(tb, name)
	if len(f) != 1 {
		tb.Fatalf("%s: %d frames, want 1", name, len(f))
	}
	return f[0]
}

// TestGoldenCaptures runs the frames scapy wrote (testdata/golden.py)
// through the program and compares every byte of what it leaves with
// scapy's expected frame. It also checks that the Go packet builders the
// other tests use agree with scapy.
func TestGoldenCaptures(t *testing.T) {
	e := newProgEnv(t)
	ack := v4tcp(remote, vip4, 40001, 443, ackSeg)
	threeHops := gueHdr{hops: []netip.Addr{unresolvedIP, peerIP, selfIP}, nextHop: 1}
	csumOuter := gueOuter{src: directorIP, dst: selfIP, udpCsum: true, sport: 0x9234, ip: ipv4Opts{ttl: 17, id: 0x1234, tos: 0x10}}
	plain := gueOuter{src: directorIP, dst: selfIP, sport: 0x9234}
	first6, _ := v6tcpFrags(remote6, vip6, 40001, 443, ackSeg, 32, 0x1234, hopByHop())
	for _, c := range []struct {
		name        string
		built       []byte // the same input made with the Go builders
		wantVerdict uint32
		wantOutcome string
	}{
		{"syn", ether(selfMAC, dirMAC, ethIPv4, plain.wrap(gueHdr{hops: hops1}, v4tcp(remote, vip4, 40000, 443, synSeg))), verdictPass, "accepted_syn"},
		{"ack6_last", ether(selfMAC, dirMAC, ethIPv4, plain.wrap(gueHdr{hops: hops1, nextHop: 1}, v6tcp(remote6, vip6, 40001, 443, ackSeg))), verdictPass, "accepted_last_resort"},
		{"fwd", ether(selfMAC, dirMAC, ethIPv4, csumOuter.wrap(threeHops, ack)), verdictRedirect, "forwarded_to_alternate"},
		{"fwd_nocsum", ether(selfMAC, dirMAC, ethIPv4, plain.wrap(gueHdr{hops: hops1}, ack)), verdictRedirect, "forwarded_to_alternate"},
		{"ext6_syn", ether(selfMAC, dirMAC, ethIPv4, plain.wrap(gueHdr{hops: hops1}, v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), destOpts()))), verdictPass, "accepted_syn"},
		{"frag6_first_fwd", ether(selfMAC, dirMAC, ethIPv4, plain.wrap(gueHdr{hops: hops1}, first6)), verdictRedirect, "forwarded_to_alternate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, want := onePacket(t, c.name+"_in.pcap"), onePacket(t, c.name+"_out.pcap")
			if !bytes.Equal(c.built, in) {
				t.Errorf("Go builders disagree with scapy\n  go %x\nscapy %x", c.built, in)
			}
			verdict, out, outcome := e.run(t, in)
			if verdict != c.wantVerdict || outcome != c.wantOutcome {
				t.Errorf("verdict %#x outcome %s, want %#x %s", verdict, outcome, c.wantVerdict, c.wantOutcome)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from testdata/%s_out.pcap\n got %x\nwant %x", c.name, out, want)
			}
		})
	}
}
