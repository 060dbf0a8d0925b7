package table

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/dchest/siphash"
)

// TestSipHashPaperVector checks the library against the SipHash paper's
// published vector (key 00..0f, message 00..0e).
func TestSipHashPaperVector(t *testing.T) {
	var msg []byte
	for i := range 15 {
		msg = append(msg, byte(i))
	}
	if got := siphash.Hash(0x0706050403020100, 0x0f0e0d0c0b0a0908, msg); got != 0xa129ca6149be45e5 {
		t.Fatalf("siphash = %#x, want 0xa129ca6149be45e5", got)
	}
}

// TestInlineSipHash checks the builder's specialised SipHash pieces against
// the library on random inputs.
func TestInlineSipHash(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for range 1000 {
		k0, k1 := r.Uint64(), r.Uint64()
		var m4 [4]byte
		binary.LittleEndian.PutUint32(m4[:], r.Uint32())
		if got, want := sipHash4(k0, k1, binary.LittleEndian.Uint32(m4[:])), siphash.Hash(k0, k1, m4[:]); got != want {
			t.Fatalf("sipHash4 = %#x, want %#x", got, want)
		}
	}
}

var goldenKey = Key{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}

// TestHashGolden pins flow hashes, so the BPF program's tests and any
// reimplementation have fixed vectors to match. Each want is SipHash-2-4
// (key 00..0f) of the message spelled out in msg.
func TestHashGolden(t *testing.T) {
	v4 := Flow{Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("10.100.0.1"), SrcPort: 40000, DstPort: 443}
	v6 := Flow{Src: netip.MustParseAddr("2001:db8::7"), Dst: netip.MustParseAddr("fd00::443"), SrcPort: 40000, DstPort: 443}
	for _, tc := range []struct {
		name   string
		fields Fields
		flow   Flow
		msg    string // hex
	}{
		{"src addr v4", SrcAddr, v4, "c6336407"},
		{"all fields v4", SrcAddr | DstAddr | SrcPort | DstPort, v4, "c63364070a6400019c4001bb"},
		{"ports only", SrcPort | DstPort, v4, "9c4001bb"},
		{"src addr v6", SrcAddr, v6, "20010db8000000000000000000000007"},
		{"src and dst v6", SrcAddr | DstAddr, v6, "20010db8000000000000000000000007fd000000000000000000000000000443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := mustHex(t, tc.msg)
			want := siphash.Hash(0x0706050403020100, 0x0f0e0d0c0b0a0908, msg)
			if got := Hash(goldenKey, tc.fields, tc.flow); got != want {
				t.Errorf("Hash = %#x, want %#x (siphash of %s)", got, want, tc.msg)
			}
		})
	}
	// Fixed values, for other implementations to match.
	if got := Hash(goldenKey, SrcAddr, v4); got != goldenSrcV4 {
		t.Errorf("Hash(src 198.51.100.7) = %#x, want %#x", got, uint64(goldenSrcV4))
	}
	if got := RowOf(goldenSrcV4); got != 0x4f1c {
		t.Errorf("RowOf = %#x", got)
	}
	if got := EncapSourcePort(0x1234_5678_9abc_def0, 40000); got != 0x8000|(0xdef0^40000)&0x7fff {
		t.Errorf("EncapSourcePort = %#x", got)
	}
}

// goldenSrcV4 is Hash(00..0f, src_addr, 198.51.100.7).
const goldenSrcV4 = 0x2f6aa40a76124f1c

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
