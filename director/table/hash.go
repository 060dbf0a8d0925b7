package table

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/dchest/siphash"
)

// Fields selects the parts of a flow that the flow hash covers.
type Fields uint8

// Hash fields, in the order they are fed to the hash.
const (
	SrcAddr Fields = 1 << iota
	DstAddr
	SrcPort
	DstPort

	allFields = SrcAddr | DstAddr | SrcPort | DstPort
)

var fieldNames = []struct {
	f    Fields
	name string
}{{SrcAddr, "src_addr"}, {DstAddr, "dst_addr"}, {SrcPort, "src_port"}, {DstPort, "dst_port"}}

// ParseFields parses a list of field names such as ["src_addr", "dst_port"].
func ParseFields(names []string) (Fields, error) {
	var f Fields
	for _, n := range names {
		found := false
		for _, fn := range fieldNames {
			if fn.name == n {
				if f&fn.f != 0 {
					return 0, fmt.Errorf("%q is listed twice", n)
				}
				f |= fn.f
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown field %q: use src_addr, dst_addr, src_port, dst_port", n)
		}
	}
	if f == 0 {
		return 0, errors.New(`empty: leave it out for the default ["src_addr"], or list fields`)
	}
	return f, nil
}

// Names returns the field names, in hash order.
func (f Fields) Names() []string {
	var names []string
	for _, fn := range fieldNames {
		if f&fn.f != 0 {
			names = append(names, fn.name)
		}
	}
	return names
}

// MarshalJSON writes the fields as a list of names.
func (f Fields) MarshalJSON() ([]byte, error) { return json.Marshal(f.Names()) }

// UnmarshalJSON reads a list of names.
func (f *Fields) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	v, err := ParseFields(names)
	*f = v
	return err
}

// Flow is what the flow hash covers: the client's side is Src.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// Hash is the flow hash of DESIGN.md §3: SipHash-2-4 keyed with key (k0 the
// little-endian bytes 0..7, k1 bytes 8..15) over the enabled fields in
// network byte order: source address, destination address, source port,
// destination port. IPv4 addresses are 4 bytes, IPv6 16. The XDP director
// computes the same value bit for bit.
func Hash(key Key, fields Fields, f Flow) uint64 {
	var buf [2*16 + 2*2]byte
	msg := buf[:0]
	if fields&SrcAddr != 0 {
		msg = appendAddr(msg, f.Src)
	}
	if fields&DstAddr != 0 {
		msg = appendAddr(msg, f.Dst)
	}
	if fields&SrcPort != 0 {
		msg = binary.BigEndian.AppendUint16(msg, f.SrcPort)
	}
	if fields&DstPort != 0 {
		msg = binary.BigEndian.AppendUint16(msg, f.DstPort)
	}
	k0 := binary.LittleEndian.Uint64(key[0:8])
	k1 := binary.LittleEndian.Uint64(key[8:16])
	return siphash.Hash(k0, k1, msg)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

// RowOf returns the table row a flow hash selects.
func RowOf(hash uint64) uint16 { return uint16(hash) }

// EncapSourcePort is the outer UDP source port the director puts on a GUE
// packet: it varies with the flow so that ECMP and RSS spread the tunnel
// traffic, and its top bit is always set.
func EncapSourcePort(hash uint64, clientPort uint16) uint16 {
	return 0x8000 | uint16(hash^uint64(clientPort))&0x7fff
}
