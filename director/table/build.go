package table

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// NumRows is the number of rows in every table: one per 16-bit flow hash.
const NumRows = 1 << 16

// Health is the health checker's view, which overrides the config's
// "healthy" field for the backends it lists. A nil Health uses the config.
type Health map[netip.Addr]bool

// Table is a built forwarding table: for every row, the hop list a packet
// whose flow hash selects that row is sent along, primary first.
type Table struct {
	Name     string
	Backends []Backend // as configured, including inactive ones
	// Width is the number of hops in every row: the configured hops, or
	// fewer when fewer backends are usable. Zero means no backend is
	// usable, and the director drops the table's packets.
	Width int
	// Healthy is the effective health of each backend (same index).
	Healthy []bool

	idx []uint16 // NumRows*Width indexes into Backends
}

// Row returns the backend indexes of row r, primary first. The slice
// aliases the table: do not modify it.
func (t *Table) Row(r uint16) []uint16 {
	i := int(r) * t.Width
	return t.idx[i : i+t.Width : i+t.Width]
}

// Hops returns the addresses of row r, primary first.
func (t *Table) Hops(r uint16) []netip.Addr {
	row := t.Row(r)
	out := make([]netip.Addr, len(row))
	for i, b := range row {
		out[i] = t.Backends[b].IP
	}
	return out
}

// Primaries counts the rows each backend is primary for (same index as
// Backends).
func (t *Table) Primaries() []int {
	n := make([]int, len(t.Backends))
	if t.Width == 0 {
		return n
	}
	for r := 0; r < NumRows; r++ {
		n[t.idx[r*t.Width]]++
	}
	return n
}

// class is the rank of a backend in the partition of DESIGN.md §4 step 3.
type class uint8

const (
	classServing  class = iota // healthy active or filling
	classDraining              // healthy draining
	classDown                  // unhealthy, any state but inactive
	numClasses
)

// Build computes every row of the table, by the rules in the package
// documentation. It is a pure function of the spec and the health: every
// director computes the same table from the same inputs. Its cost is one SipHash per usable backend per row, and its
// allocations do not depend on the number of rows.
func Build(spec *Spec, health Health) *Table {
	t := &Table{
		Name:     spec.Name,
		Backends: append([]Backend(nil), spec.Backends...),
		Healthy:  make([]bool, len(spec.Backends)),
	}
	// The usable backends grouped by class (config order within a class),
	// and the per-backend final block of the SipHash message. Each class
	// is padded to a multiple of sipLanes for the vectorised finisher.
	var byClass [numClasses][]uint16
	for i, b := range spec.Backends {
		healthy := b.Healthy == nil || *b.Healthy
		if h, ok := health[b.IP]; ok {
			healthy = h
		}
		t.Healthy[i] = healthy
		if b.State == Inactive || b.State == 0 || !b.IP.Is4() {
			continue
		}
		c := classServing
		switch {
		case !healthy:
			c = classDown
		case b.State == Draining:
			c = classDraining
		}
		byClass[c] = append(byClass[c], uint16(i))
	}
	usable := len(byClass[0]) + len(byClass[1]) + len(byClass[2])
	t.Width = min(spec.HopCount(), usable)
	if t.Width == 0 {
		return t
	}
	order := make([]uint16, 0, usable+int(numClasses)*sipLanes) // backend index of each tail
	tails := make([]uint64, 0, usable+int(numClasses)*sipLanes)
	var span [numClasses][2]int // each class's range in order and tails
	for c, members := range byClass {
		span[c][0] = len(tails)
		for _, i := range members {
			ip := spec.Backends[i].IP.As4()
			// The message is row_seed (8 bytes) ‖ ip (4 bytes): 12 bytes,
			// so the final block holds the address and the length 12 in
			// its top byte.
			tails = append(tails, uint64(binary.LittleEndian.Uint32(ip[:]))|12<<56)
			order = append(order, i)
		}
		span[c][1] = len(tails)
		for len(tails)%sipLanes != 0 {
			tails = append(tails, 0)
			order = append(order, 0)
		}
	}
	keys := make([]uint64, len(tails))
	t.idx = make([]uint16, NumRows*t.Width)

	k0 := binary.LittleEndian.Uint64(spec.Seed[0:8])
	k1 := binary.LittleEndian.Uint64(spec.Seed[8:16])
	w := t.Width

	// best[c] holds the w smallest sort keys of class c, ascending; n[c]
	// how many it holds.
	type pick struct {
		key   uint64
		index uint16
	}
	var best [numClasses][MaxHops]pick
	var n [numClasses]int
	var state [4]uint64

	for r := 0; r < NumRows; r++ {
		var be [4]byte
		binary.BigEndian.PutUint32(be[:], uint32(r))
		rowSeed := sipHash4(k0, k1, binary.LittleEndian.Uint32(be[:]))

		// SipHash state after the first block (the row seed), shared by
		// every backend in this row; each backend then needs only its
		// final block and the finalisation.
		v0 := k0 ^ 0x736f6d6570736575
		v1 := k1 ^ 0x646f72616e646f6d
		v2 := k0 ^ 0x6c7967656e657261
		v3 := k1 ^ 0x7465646279746573
		v3 ^= rowSeed
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= rowSeed
		state = [4]uint64{v0, v1, v2, v3}

		for c := range numClasses {
			lo, hi := span[c][0], span[c][1]
			n[c] = 0
			if lo == hi {
				continue
			}
			// GLB sorts on the hash's output bytes read big-endian: keys
			// come back byte-reversed.
			end := lo + (hi-lo+sipLanes-1)/sipLanes*sipLanes
			sipKeys(&state, tails[lo:end], keys[lo:end])

			// Keep the w smallest keys of this class. Ties, never seen in
			// practice, keep config order, so the result is
			// deterministic.
			b, m := &best[c], 0
			worst := ^uint64(0)
			ks, ord := keys[lo:hi], order[lo:hi]
			for i, key := range ks {
				if m < w {
					m++
				} else if key >= worst {
					continue
				}
				j := m - 1
				for j > 0 && b[j-1].key > key {
					b[j] = b[j-1]
					j--
				}
				b[j] = pick{key, ord[i]}
				if m == w {
					worst = b[m-1].key
				}
			}
			n[c] = m
		}

		// The primary is the first host of the best class present. Hosts
		// of worse classes that rank ahead of it come next: they were
		// this row's primary while they served, so they hold its
		// existing flows and must stay reachable by second chance. Then
		// the rest, partitioned by class.
		first := classServing
		for n[first] == 0 {
			first++
		}
		primary := best[first][0].key
		row := t.idx[r*w : r*w+w]
		row[0] = best[first][0].index
		k, held := 1, 0
		if first == classServing && n[first] > 1 && spec.Backends[row[0]].State == Filling {
			// A filling primary is new to this row: the first active
			// host behind it was the row's primary until the fill and
			// holds its flows. (Several filling hosts, which only
			// --force allows: the first active one among the next
			// hops−1 serving hosts, else the next serving host.)
			held = 1
			for i := 1; i < n[first]; i++ {
				if spec.Backends[best[first][i].index].State != Filling {
					held = i
					break
				}
			}
			row[1] = best[first][held].index
			k = 2
		}
		for c := first + 1; c < numClasses; c++ {
			for i := 0; i < n[c] && k < w && best[c][i].key < primary; i++ {
				row[k] = best[c][i].index
				k++
			}
		}
		for i := 1; i < n[first] && k < w; i++ {
			if i != held {
				row[k] = best[first][i].index
				k++
			}
		}
		for c := first + 1; c < numClasses; c++ {
			for i := 0; i < n[c] && k < w; i++ {
				if best[c][i].key > primary {
					row[k] = best[c][i].index
					k++
				}
			}
		}
	}
	return t
}

// sipKeysGeneric finishes SipHash from state v for every final block in
// tails and stores the byte-reversed results in keys.
func sipKeysGeneric(v *[4]uint64, tails, keys []uint64) {
	for i, m := range tails {
		keys[i] = bits.ReverseBytes64(sipFinish(v[0], v[1], v[2], v[3], m))
	}
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// sipFinish absorbs the final block m into a SipHash-2-4 state and
// finalises it.
func sipFinish(v0, v1, v2, v3, m uint64) uint64 {
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

// sipHash4 is SipHash-2-4 of a 4-byte message whose little-endian value
// is m.
func sipHash4(k0, k1 uint64, m uint32) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	return sipFinish(v0, v1, v2, v3, uint64(m)|4<<56)
}
