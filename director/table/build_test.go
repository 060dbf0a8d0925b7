package table

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"testing"

	"github.com/dchest/siphash"
)

func mustKey(t testing.TB, s string) Key {
	t.Helper()
	var k Key
	if err := k.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return k
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func backends(state State, ips ...string) []Backend {
	var out []Backend
	for _, a := range addrs(ips...) {
		out = append(out, Backend{IP: a, State: state})
	}
	return out
}

// TestGLBGoldenVectors checks GLB's published vectors (DESIGN.md §3).
func TestGLBGoldenVectors(t *testing.T) {
	seed := mustKey(t, "49a3d861d661ae5ab06ed9326871a2f5")
	spec := &Spec{Name: "golden", Seed: seed, Hops: 4,
		Backends: backends(Active, "1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4")}
	tbl := Build(spec, nil)
	for _, tc := range []struct {
		row      uint16
		rowSeed  string
		wantHops []netip.Addr
	}{
		{0, "491c53a72df4c837", addrs("1.1.1.4", "1.1.1.3", "1.1.1.2", "1.1.1.1")},
		{0xffff, "f223c0cc65161620", addrs("1.1.1.1", "1.1.1.2", "1.1.1.4", "1.1.1.3")},
	} {
		t.Run(fmt.Sprintf("row %#x", tc.row), func(t *testing.T) {
			var be [4]byte
			binary.BigEndian.PutUint32(be[:], uint32(tc.row))
			var got [8]byte
			binary.LittleEndian.PutUint64(got[:], siphash.Hash(
				binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]), be[:]))
			if hex.EncodeToString(got[:]) != tc.rowSeed {
				t.Errorf("row seed = %x, want %s", got, tc.rowSeed)
			}
			if h := tbl.Hops(tc.row); !slices.Equal(h, tc.wantHops) {
				t.Errorf("hops = %v, want %v", h, tc.wantHops)
			}
		})
	}
}

// referenceOrder is GLB's algorithm written the slow, obvious way: hash
// every usable backend with the reference SipHash, sort, stable-partition.
func referenceOrder(spec *Spec, health Health, row uint16) []netip.Addr {
	msg, k0, k1 := rowMessage(spec, row)
	type hb struct {
		key   uint64
		b     Backend
		class int
		i     int
	}
	var list []hb
	for i, b := range spec.Backends {
		if b.State == Inactive {
			continue
		}
		ip := b.IP.As4()
		key := bits.ReverseBytes64(siphash.Hash(k0, k1, append(slices.Clip(msg), ip[:]...)))
		healthy := b.Healthy == nil || *b.Healthy
		if h, ok := health[b.IP]; ok {
			healthy = h
		}
		class := 0
		switch {
		case !healthy:
			class = 2
		case b.State == Draining:
			class = 1
		}
		list = append(list, hb{key, b, class, i})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].key != list[j].key {
			return list[i].key < list[j].key
		}
		return list[i].i < list[j].i
	})
	if len(list) == 0 {
		return nil
	}
	// The primary: the first host of the best class present.
	p := 0
	for i := range list {
		if list[i].class < list[p].class {
			p = i
		}
	}
	ahead := slices.Clone(list[:p])
	sort.SliceStable(ahead, func(i, j int) bool { return ahead[i].class < ahead[j].class })
	rest := slices.Clone(list[p+1:])
	sort.SliceStable(rest, func(i, j int) bool { return rest[i].class < rest[j].class })
	head := []hb{list[p]}
	if list[p].class == 0 && list[p].b.State == Filling && len(rest) > 0 && rest[0].class == 0 {
		// A filling primary keeps the row's previous primary right
		// behind it: the first active host among the next hops−1
		// serving hosts, else the next serving host.
		held := 0
		for i := 0; i < len(rest) && i < spec.HopCount()-1 && rest[i].class == 0; i++ {
			if rest[i].b.State != Filling {
				held = i
				break
			}
		}
		head = append(head, rest[held])
		rest = slices.Delete(slices.Clone(rest), held, held+1)
	}
	order := append(append(head, ahead...), rest...)
	var out []netip.Addr
	for i := 0; i < len(order) && i < spec.HopCount(); i++ {
		out = append(out, order[i].b.IP)
	}
	return out
}

// rowMessage returns GLB's per-row message (the row seed's bytes) and the
// table's SipHash keys.
func rowMessage(spec *Spec, row uint16) (msg []byte, k0, k1 uint64) {
	k0 = binary.LittleEndian.Uint64(spec.Seed[:8])
	k1 = binary.LittleEndian.Uint64(spec.Seed[8:])
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], uint32(row))
	return binary.LittleEndian.AppendUint64(nil, siphash.Hash(k0, k1, be[:])), k0, k1
}

// rank returns a backend's rendezvous key in a row: lower ranks first.
func rank(spec *Spec, row uint16, ip netip.Addr) uint64 {
	msg, k0, k1 := rowMessage(spec, row)
	a := ip.As4()
	return bits.ReverseBytes64(siphash.Hash(k0, k1, append(msg, a[:]...)))
}

func randomSpec(r *rand.Rand, n int) *Spec {
	spec := &Spec{Name: "random", Hops: 1 + r.IntN(MaxHops)}
	for i := range spec.Seed {
		spec.Seed[i] = byte(r.Uint32())
	}
	states := []State{Active, Active, Active, Filling, Draining, Inactive}
	for i := range n {
		b := Backend{IP: netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), State: states[r.IntN(len(states))]}
		switch r.IntN(4) {
		case 0:
			f := false
			b.Healthy = &f
		case 1:
			tr := true
			b.Healthy = &tr
		}
		spec.Backends = append(spec.Backends, b)
	}
	return spec
}

// TestBuildMatchesReference checks the fast builder against the reference
// algorithm on random tables in every state mix.
func TestBuildMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 40 {
		spec := randomSpec(r, r.IntN(20))
		var health Health
		if trial%3 == 0 && len(spec.Backends) > 0 {
			health = Health{spec.Backends[0].IP: trial%2 == 0}
		}
		tbl := Build(spec, health)
		for range 200 {
			row := uint16(r.Uint32())
			want := referenceOrder(spec, health, row)
			got := tbl.Hops(row)
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("trial %d row %d: got %v, want %v", trial, row, got, want)
			}
		}
	}
}

func BenchmarkBuild256(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	spec := randomSpec(r, 256)
	for i := range spec.Backends {
		spec.Backends[i].State = Active
		spec.Backends[i].Healthy = nil
	}
	spec.Hops = 2
	b.ReportAllocs()
	for b.Loop() {
		Build(spec, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/NumRows, "ns/row")
}

// TestSipKeysMatchGeneric checks the vectorised finisher (when the CPU has
// it) against the scalar one.
func TestSipKeysMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 100 {
		v := [4]uint64{r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()}
		tails := make([]uint64, sipLanes*(1+r.IntN(4)))
		for i := range tails {
			tails[i] = r.Uint64()
		}
		got, want := make([]uint64, len(tails)), make([]uint64, len(tails))
		sipKeys(&v, tails, got)
		sipKeysGeneric(&v, tails, want)
		if !slices.Equal(got, want) {
			t.Fatalf("sipKeys = %x, want %x", got, want)
		}
	}
}

// BenchmarkBuild256Scalar is the same build with the scalar finisher, as a
// baseline for the vectorised one.
func BenchmarkBuild256Scalar(b *testing.B) {
	if !useAVX512 {
		b.Skip("no AVX-512: BenchmarkBuild256 is already scalar")
	}
	useAVX512 = false
	defer func() { useAVX512 = true }()
	BenchmarkBuild256(b)
}
