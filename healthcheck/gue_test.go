package healthcheck

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

var (
	dirIP  = netip.MustParseAddr("10.0.0.1")
	backIP = netip.MustParseAddr("10.0.0.2")
	nonce0 = [nonceLen]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
)

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// goldenProbe is the UDP payload of a probe from 10.0.0.1 to 10.0.0.2,
// echo id 0x1234, seq 1, nonce 00..0b, with its checksums worked out
// independently of this package.
const goldenProbe = `
	01 04 0000 0000 00 00                 GUE hlen 1, proto 4; GLB type 0, next_hop 0, hop_count 0
	45 00 002c 0000 4000 40 01 26cf       IPv4, 44 bytes, DF, TTL 64, ICMP
	0a000001 0a000002
	08 00 3e12 1234 0001                  echo request, id 0x1234, seq 1
	474c4248 000102030405060708090a0b     "GLBH" + nonce`

func TestProbeGolden(t *testing.T) {
	got := appendProbe(nil, dirIP, backIP, probeID{id: 0x1234, seq: 1, nonce: nonce0})
	want := mustHex(t, stripComments(goldenProbe))
	if !bytes.Equal(got, want) {
		t.Fatalf("probe:\n got %x\nwant %x", got, want)
	}
	if len(got) != probeLen {
		t.Fatalf("probe is %d bytes, probeLen says %d", len(got), probeLen)
	}
}

// stripComments keeps the hex words of a golden listing.
func stripComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, f := range strings.Fields(line) {
			if _, err := hex.DecodeString(f); err != nil {
				break
			}
			out = append(out, f)
		}
	}
	return strings.Join(out, "")
}

// reply builds the echo reply a backend's stack sends for a probe.
func reply(id, seq uint16, data []byte) []byte {
	b := []byte{icmpEchoReply, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// unreachable builds an ICMP destination unreachable quoting the first
// quoteLen bytes of the probe's IPv4/UDP packet.
func unreachable(code uint8, probe []byte, quoteLen int) []byte {
	pkt := appendIPv4(nil, dirIP, backIP, protoUDP, 8+len(probe))
	pkt = append(pkt, 0x80, 0x01, 0x4c, 0x43) // sport, dport 19523
	pkt = binary.BigEndian.AppendUint16(pkt, uint16(8+len(probe)))
	pkt = append(pkt, 0, 0)
	pkt = append(pkt, probe...)
	b := append([]byte{icmpUnreachable, code, 0, 0, 0, 0, 0, 0}, pkt[:min(quoteLen, len(pkt))]...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func withChecksum(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:], 0)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func probeData(n [nonceLen]byte) []byte { return append([]byte(probeMagic), n[:]...) }

func TestParseICMP(t *testing.T) {
	probe := appendProbe(nil, dirIP, backIP, probeID{id: 7, seq: 9, nonce: nonce0})
	badSum := reply(7, 9, probeData(nonce0))
	badSum[2] ^= 0xff
	tests := []struct {
		name    string
		in      []byte
		want    icmpMsg
		wantErr error
	}{
		{name: "an echo reply to a probe parses", in: reply(7, 9, probeData(nonce0)),
			want: icmpMsg{typ: 0, id: 7, seq: 9, nonce: nonce0, hasNonce: true}},
		{name: "a port unreachable quoting a whole probe parses", in: unreachable(3, probe, 1000),
			want: icmpMsg{typ: 3, code: 3, id: 7, seq: 9, nonce: nonce0, hasNonce: true, probeDst: backIP}},
		{name: "a quote cut after the echo header has no nonce", in: unreachable(1, probe, 20+8+8+20+8),
			want: icmpMsg{typ: 3, code: 1, id: 7, seq: 9, probeDst: backIP}},
		{name: "a quote cut before the echo header is short", in: unreachable(3, probe, 20+8+8+20+4), wantErr: errShort},
		{name: "a quote of 28 bytes is short", in: unreachable(3, probe, 28), wantErr: errShort},
		{name: "a ping's reply is foreign", in: reply(7, 9, []byte("abcdefghijklmnopqrstuvwx")), wantErr: errForeign},
		{name: "an echo request is foreign", in: func() []byte {
			b := reply(7, 9, probeData(nonce0))
			b[0] = icmpEchoRequest
			return withChecksum(b)
		}(), wantErr: errForeign},
		{name: "a bad checksum is caught", in: badSum, wantErr: errChecksum},
		{name: "seven bytes are short", in: []byte{0, 0, 0, 0, 0, 0, 0}, wantErr: errShort},
		{name: "an unreachable about TCP is foreign", in: func() []byte {
			b := unreachable(3, probe, 1000)
			b[8+9] = 6
			return withChecksum(b)
		}(), wantErr: errForeign},
		{name: "a quoted GUE header with hlen 0 is malformed", in: func() []byte {
			p := append([]byte(nil), probe...)
			p[0] = 0
			return unreachable(3, p, 1000)
		}(), wantErr: errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseICMP(tt.in)
			if err != tt.wantErr {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDemux(t *testing.T) {
	d := newDemux(0x4242)
	w := &waiter{backend: backIP, port: 19523, nonce: nonce0}
	seq, err := d.add(w)
	if err != nil {
		t.Fatal(err)
	}
	other := netip.MustParseAddr("10.0.0.9")
	otherNonce := nonce0
	otherNonce[0] = 0xff
	probe := appendProbe(nil, dirIP, backIP, probeID{id: 0x4242, seq: seq, nonce: nonce0})
	steps := []struct {
		name string
		src  netip.Addr
		in   []byte
		want string
	}{
		{"a reply with another echo id is foreign", backIP, reply(0x4243, seq, probeData(nonce0)), icmpForeign},
		{"a reply from another host is a mismatch", other, reply(0x4242, seq, probeData(nonce0)), icmpMismatch},
		{"a reply with the wrong nonce is a mismatch", backIP, reply(0x4242, seq, probeData(otherNonce)), icmpMismatch},
		{"a reply to a sequence number not in flight is late", backIP, reply(0x4242, seq+1, probeData(nonce0)), icmpLate},
		{"a truncated quote is malformed", backIP, withChecksum([]byte{3, 3, 0, 0, 0, 0, 0, 0, 0x45}), icmpMalformed},
		{"the right reply matches", backIP, reply(0x4242, seq, probeData(nonce0)), icmpMatchedReply},
		{"a duplicate is late", backIP, reply(0x4242, seq, probeData(nonce0)), icmpLate},
		{"an unreachable for a finished probe is late", backIP, unreachable(3, probe, 1000), icmpLate},
	}
	for _, s := range steps {
		if got := d.deliver(s.src, s.in); got != s.want {
			t.Fatalf("%s: outcome %q, want %q", s.name, got, s.want)
		}
	}
	if r := <-w.done; !r.ok {
		t.Fatalf("matched reply gave %+v", r)
	}

	w2 := &waiter{backend: backIP, port: 19523, nonce: nonce0}
	seq2, _ := d.add(w2)
	probe2 := appendProbe(nil, dirIP, backIP, probeID{id: 0x4242, seq: seq2, nonce: nonce0})
	if got := d.deliver(backIP, unreachable(3, probe2, 1000)); got != icmpMatchedUnreachable {
		t.Fatalf("port unreachable: outcome %q", got)
	}
	r := <-w2.done
	if r.ok || !strings.Contains(r.reason, "udp port 19523 unreachable") {
		t.Fatalf("port unreachable gave %+v", r)
	}

	w3 := &waiter{backend: backIP, port: 19523, nonce: nonce0}
	seq3, _ := d.add(w3)
	probe3 := appendProbe(nil, dirIP, backIP, probeID{id: 0x4242, seq: seq3, nonce: nonce0})
	if got := d.deliver(dirIP, unreachable(1, probe3, 20+8+8+20+8)); got != icmpMatchedUnreachable {
		t.Fatalf("host unreachable: outcome %q", got)
	}
	if r := <-w3.done; r.ok || r.reason != "host unreachable (ICMP from 10.0.0.1)" {
		t.Fatalf("host unreachable gave %+v", r)
	}
}

func TestDemuxSkipsSequenceNumbersInFlight(t *testing.T) {
	d := newDemux(1)
	first, _ := d.add(&waiter{})
	d.next = first // wrap around onto the probe still in flight
	second, _ := d.add(&waiter{})
	if second == first {
		t.Fatalf("sequence number %d given twice", first)
	}
}

// FuzzDemux feeds arbitrary ICMP messages to the demultiplexer with a
// probe in flight: it never panics, and only the probe's own reply or an
// error quoting the probe completes it.
func FuzzDemux(f *testing.F) {
	probe := appendProbe(nil, dirIP, backIP, probeID{id: 0x4242, seq: 0, nonce: nonce0})
	f.Add(reply(0x4242, 0, probeData(nonce0)))
	f.Add(unreachable(3, probe, 1000))
	f.Add(unreachable(3, probe, 56))
	f.Add(unreachable(1, probe, 28))
	f.Add(reply(1, 2, []byte("ping payload")))
	f.Add([]byte{})
	f.Add([]byte{3, 3, 0, 0, 0, 0, 0, 0, 0x4f})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newDemux(0x4242)
		w := &waiter{backend: backIP, port: 19523, nonce: nonce0}
		seq, _ := d.add(w)
		outcome := d.deliver(backIP, b)
		m, err := parseICMP(b)
		switch outcome {
		case icmpMatchedReply:
			if err != nil || m.typ != icmpEchoReply || m.id != 0x4242 || m.seq != seq || m.nonce != nonce0 {
				t.Fatalf("matched %x as a reply: %+v %v", b, m, err)
			}
			if r := <-w.done; !r.ok {
				t.Fatal("matched reply did not pass")
			}
		case icmpMatchedUnreachable:
			if err != nil || m.typ != icmpUnreachable || m.probeDst != backIP || m.seq != seq {
				t.Fatalf("matched %x as unreachable: %+v %v", b, m, err)
			}
			if r := <-w.done; r.ok {
				t.Fatal("matched unreachable passed")
			}
		default:
			select {
			case r := <-w.done:
				t.Fatalf("outcome %q completed the probe with %+v", outcome, r)
			default:
			}
		}
	})
}

// The demultiplexer's cost per ICMP message read from the raw socket, with
// the Internet checksum of the same message (which any handling of it
// must compute) as the same-run baseline. Foreign messages, such as the
// replies to other programs' pings on a busy host, take the same path up
// to the echo id.
func BenchmarkDemux(b *testing.B) {
	d := newDemux(0x4242)
	w := &waiter{backend: backIP, port: 19523, nonce: nonce0}
	seq, _ := d.add(w)
	ours := reply(0x4242, seq, probeData(nonce0))
	foreign := reply(0x1111, 7, probeData(nonce0))
	b.Run("baseline-checksum", func(b *testing.B) {
		for b.Loop() {
			_ = checksum(ours)
		}
	})
	b.Run("late-reply", func(b *testing.B) {
		late := reply(0x4242, seq+1, probeData(nonce0))
		for b.Loop() {
			_ = d.deliver(backIP, late)
		}
	})
	b.Run("foreign-reply", func(b *testing.B) {
		for b.Loop() {
			_ = d.deliver(backIP, foreign)
		}
	})
	b.Run("matched-reply", func(b *testing.B) {
		for b.Loop() {
			w.done = make(chan result, 1)
			d.mu.Lock()
			d.waiting[seq] = w
			d.mu.Unlock()
			_ = d.deliver(backIP, ours)
		}
	})
}
