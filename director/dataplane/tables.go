package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	mbits "math/bits"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/cilium/ebpf"

	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/director/table"
)

// Limits of the kernel maps (bpf/include/director.h). Apply checks a set
// of tables against them before it changes anything.
const (
	MaxTables     = 256
	MaxPrefixes   = 8192
	MaxBinds      = 8192
	MaxPortRanges = 262144 // aligned port blocks in glb_ports, over all prefixes

	// portGrace is how long Apply waits between switching prefixes to new
	// port blocks and deleting the old ones: far longer than any packet
	// holds the glb_binds entry it read (XDP runs with preemption off).
	portGrace = 5 * time.Millisecond

	numRows   = table.NumRows
	metaIndex = numRows
)

// Table is one forwarding table to install: its settings (binds, hash
// key and fields) and its built rows.
type Table struct {
	Spec  *table.Spec
	Built *table.Table
}

// Result says what an Apply changed.
type Result struct {
	// Swapped lists the tables whose rows, key or fields changed and were
	// swapped in (new tables included).
	Swapped []string
	// Removed lists tables that are gone.
	Removed []string
	// BindsChanged is true if the bind trie was rewritten in any way.
	BindsChanged bool
}

// tableState is what the kernel holds for one table.
type tableState struct {
	slot       uint32
	rows       []bpf.DirectorTableRow // as installed, meta included
	generation uint64                 // swaps of this table since Open
	width      int
}

// BindInfo describes an installed bind, for metrics.
type BindInfo struct {
	Table string
	Bind  string // table.Bind.String(): "tcp 10.0.0.0/29:443"
	slot  uint32
}

type state struct {
	tables     map[string]*tableState
	binds      map[string]BindInfo // by bindKey
	trie       map[bpf.DirectorBindKey]*prefixState
	tableSlots slots
	bindSlots  slots
	nextID     uint32 // next prefix id for glb_ports
	// foreign holds table slots an earlier daemon filled: they stay
	// until the first Apply has pointed the trie elsewhere.
	foreign []uint32
	// strayPorts are glb_ports entries an earlier daemon left that no
	// trie entry points at: the first Apply deletes them.
	strayPorts []bpf.DirectorPortKey
}

// prefixState is what the kernel holds for one bind prefix: its glb_binds
// value and its glb_ports entries (all under value.PrefixId).
type prefixState struct {
	value bpf.DirectorBindValue
	ports map[bpf.DirectorPortKey]bpf.DirectorBindRef
}

func (s *state) init() {
	s.tables = map[string]*tableState{}
	s.binds = map[string]BindInfo{}
	s.trie = map[bpf.DirectorBindKey]*prefixState{}
	s.nextID = 1
	s.tableSlots = newSlots(MaxTables)
	s.bindSlots = newSlots(MaxBinds)
}

// slots hands out indexes of a fixed-size array map.
type slots struct{ used []bool }

func newSlots(n int) slots { return slots{used: make([]bool, n)} }

func (s *slots) alloc() (uint32, bool) {
	for i, u := range s.used {
		if !u {
			s.used[i] = true
			return uint32(i), true
		}
	}
	return 0, false
}

func (s *slots) free(i uint32) { s.used[i] = false }

// adopt reads what an earlier daemon left in pinned maps: its trie entries
// (replaced or deleted by the first Apply) and its table slots (kept until
// then, so its packets keep flowing).
func (d *Dataplane) adopt() error {
	var (
		key bpf.DirectorBindKey
		val bpf.DirectorBindValue
	)
	byID := map[uint32]*prefixState{}
	useBind := func(r bpf.DirectorBindRef) {
		if r.Kind == refBind && int(r.Bind) < MaxBinds {
			d.state.bindSlots.used[r.Bind] = true
		}
	}
	it := d.objs.GlbBinds.Iterate()
	for it.Next(&key, &val) {
		ps := &prefixState{value: val, ports: map[bpf.DirectorPortKey]bpf.DirectorBindRef{}}
		d.state.trie[key] = ps
		byID[val.PrefixId] = ps
		d.state.nextID = max(d.state.nextID, val.PrefixId+1)
		useBind(val.Echo)
		useBind(val.Frag[0])
		useBind(val.Frag[1])
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read pinned bind trie: %w", err)
	}
	var (
		pk  bpf.DirectorPortKey
		ref bpf.DirectorBindRef
	)
	pit := d.objs.GlbPorts.Iterate()
	for pit.Next(&pk, &ref) {
		if ps, ok := byID[pk.PrefixId]; ok {
			ps.ports[pk] = ref
			useBind(ref)
		} else {
			d.state.strayPorts = append(d.state.strayPorts, pk)
		}
		d.state.nextID = max(d.state.nextID, pk.PrefixId+1)
	}
	if err := pit.Err(); err != nil {
		return fmt.Errorf("read pinned port trie: %w", err)
	}
	for slot := range uint32(MaxTables) {
		var id ebpf.MapID
		err := d.objs.GlbTables.Lookup(slot, &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read pinned table slot %d: %w", slot, err)
		}
		d.state.tableSlots.used[slot] = true
		d.state.foreign = append(d.state.foreign, slot)
	}
	if len(d.state.trie) > 0 || len(d.state.foreign) > 0 {
		d.log.Info("adopted pinned director state", "prefixes", len(d.state.trie), "tables", len(d.state.foreign))
	}
	return nil
}

// bindKey identifies a bind across Applies, so its counter slot survives
// reloads that do not change it.
func bindKey(tableName string, b table.Bind) string {
	return tableName + "\x00" + b.String()
}

// plannedEntry is a bind_entry before slots are known.
type plannedEntry struct {
	key    string
	table  string
	bind   table.Bind
	order  int // position in the config, for ties
	prefix netip.Prefix
}

// planTrie computes, for every distinct bind prefix, the binds that cover
// it: longest prefix first, then config order. A packet's longest-prefix
// match then finds every bind that could apply to its address.
func planTrie(tables []Table) (map[netip.Prefix][]plannedEntry, int, error) {
	var all []plannedEntry
	for _, t := range tables {
		for _, b := range t.Spec.Binds {
			p := b.Prefix.Masked()
			all = append(all, plannedEntry{key: bindKey(t.Spec.Name, b), table: t.Spec.Name, bind: b, order: len(all), prefix: p})
		}
	}
	if len(all) > MaxBinds {
		return nil, 0, fmt.Errorf("%d binds: the director holds at most %d", len(all), MaxBinds)
	}
	plan := map[netip.Prefix][]plannedEntry{}
	for _, e := range all {
		plan[e.prefix] = nil
	}
	if len(plan) > MaxPrefixes {
		return nil, 0, fmt.Errorf("%d distinct bind prefixes: the director holds at most %d", len(plan), MaxPrefixes)
	}
	for p := range plan {
		var cover []plannedEntry
		for _, e := range all {
			if e.prefix.Addr().Is4() == p.Addr().Is4() && e.prefix.Bits() <= p.Bits() && e.prefix.Contains(p.Addr()) {
				cover = append(cover, e)
			}
		}
		sort.SliceStable(cover, func(i, j int) bool {
			if cover[i].prefix.Bits() != cover[j].prefix.Bits() {
				return cover[i].prefix.Bits() > cover[j].prefix.Bits()
			}
			return cover[i].order < cover[j].order
		})
		plan[p] = cover
	}
	ranges := 0
	for p, cover := range plan {
		n, err := checkPorts(p, cover)
		if err != nil {
			return nil, 0, err
		}
		ranges += n
	}
	if ranges > MaxPortRanges {
		return nil, 0, fmt.Errorf("the binds' port ranges, repeated for every prefix they cover, make %d port blocks: the director holds at most %d; use fewer, wider or aligned port ranges, or fewer nested prefixes", ranges, MaxPortRanges)
	}
	return plan, len(all), nil
}

// checkPorts checks that no two binds covering p serve the same protocol
// and port (Validate rejects such configs, but Apply may be handed
// anything), and returns how many glb_ports blocks p needs.
func checkPorts(p netip.Prefix, cover []plannedEntry) (int, error) {
	byStart := slices.Clone(cover)
	slices.SortFunc(byStart, func(a, b plannedEntry) int {
		if a.bind.Proto != b.bind.Proto {
			return int(a.bind.Proto) - int(b.bind.Proto)
		}
		return int(a.bind.PortStart) - int(b.bind.PortStart)
	})
	n := 0
	for i, e := range byStart {
		if e.bind.PortStart > e.bind.PortEnd {
			return 0, fmt.Errorf("table %q bind %s: port_start is above port_end", e.table, e.bind)
		}
		if i > 0 && byStart[i-1].bind.Proto == e.bind.Proto && byStart[i-1].bind.PortEnd >= e.bind.PortStart {
			return 0, fmt.Errorf("table %q bind %s overlaps table %q bind %s on %s: a packet must match one bind only", e.table, e.bind, byStart[i-1].table, byStart[i-1].bind, p)
		}
		n += len(portBlocks(e.bind.PortStart, e.bind.PortEnd))
	}
	return n, nil
}

// portBlock is an aligned run of 2^(16-bits) ports starting at start.
type portBlock struct {
	start uint16
	bits  int // significant bits of the port: 16 for a single port
}

// portBlocks tiles lo..hi (inclusive) with the fewest aligned
// power-of-two blocks: at most 30, one for a single port or an aligned
// range. This is how a range goes into an LPM trie without listing its
// ports.
func portBlocks(lo, hi uint16) []portBlock {
	var out []portBlock
	for p := int(lo); p <= int(hi); {
		size := 1
		// Grow while the block stays aligned at p and inside the range.
		for size < 1<<16 && p%(size*2) == 0 && p+size*2-1 <= int(hi) {
			size *= 2
		}
		out = append(out, portBlock{start: uint16(p), bits: 16 - mbits.TrailingZeros(uint(size))})
		p += size
	}
	return out
}

// refBind etc. are GLB_REF_* of bpf/include/director.h.
const (
	refNone      = 0
	refBind      = 1
	refAmbiguous = 2
)

// prefixContent is what the kernel must hold for a prefix: its glb_binds
// value (without a prefix id) and its port blocks.
func prefixContent(cover []plannedEntry, ref func(plannedEntry) bpf.DirectorBindRef) (bpf.DirectorBindValue, []portEntry) {
	var v bpf.DirectorBindValue
	var ports []portEntry
	if len(cover) > 0 {
		v.Echo = ref(cover[0])
	}
	for i, proto := range []table.Proto{table.TCP, table.UDP} {
		for _, e := range cover {
			if e.bind.Proto != proto {
				continue
			}
			switch r := ref(e); {
			case v.Frag[i].Kind == refNone:
				v.Frag[i] = r
			case v.Frag[i].Kind == refBind && v.Frag[i].Table != r.Table:
				v.Frag[i] = bpf.DirectorBindRef{Kind: refAmbiguous}
			}
		}
	}
	for _, e := range cover {
		r := ref(e)
		for _, b := range portBlocks(e.bind.PortStart, e.bind.PortEnd) {
			ports = append(ports, portEntry{proto: uint8(e.bind.Proto), block: b, ref: r})
		}
	}
	return v, ports
}

// portEntry is a glb_ports entry before its prefix id is known.
type portEntry struct {
	proto uint8
	block portBlock
	ref   bpf.DirectorBindRef
}

func (e portEntry) key(id uint32) bpf.DirectorPortKey {
	return bpf.DirectorPortKey{Prefixlen: uint32(48 + e.block.bits), PrefixId: id, Proto: e.proto, Port: mbits.ReverseBytes16(e.block.start)}
}

// samePorts reports whether ps holds exactly ports.
func samePorts(ps *prefixState, ports []portEntry) bool {
	if len(ps.ports) != len(ports) {
		return false
	}
	for _, e := range ports {
		if r, ok := ps.ports[e.key(ps.value.PrefixId)]; !ok || r != e.ref {
			return false
		}
	}
	return true
}

// trieKey is the LPM key of a prefix: 32 bits of family, then the address.
func trieKey(p netip.Prefix) bpf.DirectorBindKey {
	var k bpf.DirectorBindKey
	k.Prefixlen = uint32(32 + p.Bits())
	if p.Addr().Is4() {
		k.Family = 4
		a := p.Addr().As4()
		copy(k.Addr[:], a[:])
	} else {
		k.Family = 6
		a := p.Addr().As16()
		copy(k.Addr[:], a[:])
	}
	return k
}

// be32 returns the uint32 whose little-endian memory bytes are the
// address in network order, as the program compares and writes it.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.LittleEndian.Uint32(b[:])
}

// hashFields converts table.Fields to the program's GLB_HASH_* bits.
func hashFields(f table.Fields) uint32 {
	var v uint32
	if f&table.SrcAddr != 0 {
		v |= 0x1
	}
	if f&table.DstAddr != 0 {
		v |= 0x2
	}
	if f&table.SrcPort != 0 {
		v |= 0x4
	}
	if f&table.DstPort != 0 {
		v |= 0x8
	}
	return v
}

// content lays out a table as its inner map holds it: the rows, then the
// metadata at metaIndex (written as a row-sized value).
func content(t Table) []bpf.DirectorTableRow {
	rows := make([]bpf.DirectorTableRow, numRows+1)
	b := t.Built
	if b.Width > 0 {
		addrs := make([]uint32, len(b.Backends))
		for i, be := range b.Backends {
			addrs[i] = be32(be.IP)
		}
		for r := range numRows {
			for i, idx := range b.Row(uint16(r)) {
				rows[r].Hops[i] = addrs[idx]
			}
		}
	}
	k0 := binary.LittleEndian.Uint64(t.Spec.HashKey[0:8])
	k1 := binary.LittleEndian.Uint64(t.Spec.HashKey[8:16])
	m := &rows[metaIndex]
	m.Hops[0], m.Hops[1] = uint32(k0), uint32(k0>>32)
	m.Hops[2], m.Hops[3] = uint32(k1), uint32(k1>>32)
	m.Hops[4] = hashFields(t.Spec.Fields())
	m.Hops[5] = uint32(b.Width)
	return rows
}

var rowKeys = func() []uint32 {
	k := make([]uint32, numRows+1)
	for i := range k {
		k[i] = uint32(i)
	}
	return k
}()

// newInner creates a table map and fills it with batch updates.
func (d *Dataplane) newInner(rows []bpf.DirectorTableRow) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(d.innerSpec)
	if err != nil {
		return nil, fmt.Errorf("create table map: %w", err)
	}
	if _, err := m.BatchUpdate(rowKeys, rows, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill table map: %w", err)
	}
	return m, nil
}

// Apply makes the kernel's tables and binds equal to tables. A table whose
// rows, key and fields are unchanged is left alone; a changed one is
// swapped atomically. On error the running tables stay in use: new tables
// that were installed are removed again, and the trie is only touched once
// every table is in place.
func (d *Dataplane) Apply(tables []Table) (Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var res Result
	st := &d.state

	names := map[string]bool{}
	for _, t := range tables {
		if t.Spec == nil || t.Built == nil {
			return res, errors.New("apply tables: a table has no spec or rows")
		}
		if names[t.Spec.Name] {
			return res, fmt.Errorf("apply tables: table %q listed twice", t.Spec.Name)
		}
		if t.Built.Width > table.MaxHops {
			return res, fmt.Errorf("apply tables: table %q has %d hops per row, at most %d", t.Spec.Name, t.Built.Width, table.MaxHops)
		}
		names[t.Spec.Name] = true
		for i, b := range t.Spec.Binds {
			// The program would take the director's own traffic (SSH,
			// BGP, ping, health-check replies) for the VIP's and wrap
			// it in GUE: refuse, and keep the running tables.
			if b.Prefix.Contains(d.cfg.SrcIP) {
				return res, fmt.Errorf("apply tables: table %q binds[%d] (%s) covers this director's own address %s (--src-ip): its SSH, BGP and health checks would be sent into GUE; narrow the bind or give the director an address outside every VIP prefix",
					t.Spec.Name, i, b, d.cfg.SrcIP)
			}
		}
	}
	plan, _, err := planTrie(tables)
	if err != nil {
		return res, fmt.Errorf("apply tables: %w", err)
	}
	newNames := 0
	for name := range names {
		if _, ok := st.tables[name]; !ok {
			newNames++
		}
	}
	free := 0
	for _, u := range st.tableSlots.used {
		if !u {
			free++
		}
	}
	if newNames > free {
		return res, fmt.Errorf("apply tables: %d new tables, %d free table slots (the director holds at most %d tables)", newNames, free, MaxTables)
	}

	// 1. Tables: new ones into free slots, changed ones swapped in place.
	var added []string
	undo := func() {
		for _, name := range added {
			ts := st.tables[name]
			_ = d.objs.GlbTables.Delete(ts.slot)
			st.tableSlots.free(ts.slot)
			delete(st.tables, name)
		}
	}
	for _, t := range tables {
		name := t.Spec.Name
		rows := content(t)
		ts, ok := st.tables[name]
		if ok && slices.Equal(ts.rows, rows) {
			continue
		}
		if !ok {
			slot, free := st.tableSlots.alloc()
			if !free {
				undo()
				return res, fmt.Errorf("apply tables: no free table slot for %q (at most %d tables)", name, MaxTables)
			}
			ts = &tableState{slot: slot}
			st.tables[name] = ts
			added = append(added, name)
		}
		inner, err := d.newInner(rows)
		if err == nil {
			err = d.objs.GlbTables.Put(ts.slot, inner)
			inner.Close() // the outer map holds its own reference
		}
		if err != nil {
			undo()
			return res, fmt.Errorf("apply table %q: %w", name, err)
		}
		ts.rows, ts.width = rows, t.Built.Width
		ts.generation++
		res.Swapped = append(res.Swapped, name)
	}

	// 2. Bind counter slots: kept for unchanged binds, zeroed when new.
	newBinds := map[string]BindInfo{}
	for _, entries := range plan {
		for _, e := range entries {
			if _, ok := newBinds[e.key]; ok {
				continue
			}
			if bi, ok := st.binds[e.key]; ok {
				newBinds[e.key] = bi
				continue
			}
			slot, free := st.bindSlots.alloc()
			if !free {
				undo()
				return res, fmt.Errorf("apply tables: no free bind counter slot (at most %d binds)", MaxBinds)
			}
			if err := d.objs.GlbBindStats.Put(slot, make([]bpf.DirectorBindStats, d.ncpu)); err != nil {
				undo()
				return res, fmt.Errorf("apply tables: reset bind counters: %w", err)
			}
			newBinds[e.key] = BindInfo{Table: e.table, Bind: e.bind.String(), slot: slot}
		}
	}

	// 3. The tries. Prefixes no longer planned go first (their glb_binds
	// entry, then their port blocks), with the blocks an earlier daemon
	// left, so their room in glb_ports is free before anything is added.
	// A prefix whose binds changed gets a new prefix id: its port blocks
	// are written under the new id, then its glb_binds entry is switched
	// to it with one update. The old id's blocks are deleted after every
	// switch, once a packet that read the old entry (a lookup takes
	// nanoseconds, under RCU) is done with it: a packet sees the old
	// binds or the new ones, never a mix and never none. Only when
	// glb_ports has no room for a prefix's new blocks beside the old ones
	// are those deleted first, and packets to that prefix pass to the
	// stack for the moment of the rewrite (logged).
	ref := func(e plannedEntry) bpf.DirectorBindRef {
		return bpf.DirectorBindRef{Kind: refBind, Table: uint16(st.tables[e.table].slot), Bind: newBinds[e.key].slot}
	}
	newTrie := make(map[bpf.DirectorBindKey]bool, len(plan))
	for p := range plan {
		newTrie[trieKey(p)] = true
	}
	for k, ps := range st.trie {
		if newTrie[k] {
			continue
		}
		if err := d.objs.GlbBinds.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("apply tables: remove bind prefix: %w", err)
		}
		delete(st.trie, k)
		res.BindsChanged = true
		if err := d.deletePorts(ps.ports); err != nil {
			return res, fmt.Errorf("apply tables: remove port blocks: %w", err)
		}
	}
	for _, pk := range st.strayPorts {
		if err := d.objs.GlbPorts.Delete(pk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("apply tables: remove adopted port block: %w", err)
		}
	}
	st.strayPorts = nil
	held := 0 // port blocks in glb_ports now
	for _, ps := range st.trie {
		held += len(ps.ports)
	}
	var retired []map[bpf.DirectorPortKey]bpf.DirectorBindRef // old blocks, deleted after the switches
	retire := func() error {
		if len(retired) == 0 {
			return nil
		}
		time.Sleep(portGrace)
		for _, ports := range retired {
			if err := d.deletePorts(ports); err != nil {
				return fmt.Errorf("apply tables: remove old port blocks: %w", err)
			}
			held -= len(ports)
		}
		retired = nil
		return nil
	}
	// Prefixes that shrink first, then those that grow, then new ones:
	// whenever the final tries fit glb_ports, so does every step.
	order := make([]netip.Prefix, 0, len(plan))
	growth := make(map[netip.Prefix]int, len(plan))
	for p, entries := range plan {
		_, ports := prefixContent(entries, ref)
		growth[p] = len(ports)
		if old, ok := st.trie[trieKey(p)]; ok {
			growth[p] -= len(old.ports)
		}
		order = append(order, p)
	}
	sort.Slice(order, func(i, j int) bool {
		if growth[order[i]] != growth[order[j]] {
			return growth[order[i]] < growth[order[j]]
		}
		return order[i].String() < order[j].String()
	})
	for _, p := range order {
		v, ports := prefixContent(plan[p], ref)
		k := trieKey(p)
		old, ok := st.trie[k]
		if ok {
			v.PrefixId = old.value.PrefixId
			if old.value == v && samePorts(old, ports) {
				continue
			}
		}
		if held+len(ports) > MaxPortRanges {
			if err := retire(); err != nil {
				return res, err
			}
		}
		if ok && held+len(ports) > MaxPortRanges {
			d.log.Warn("no room in glb_ports for a prefix's new port blocks beside its old ones: "+
				"its packets pass to the stack while it is rewritten", "prefix", p, "blocks", len(ports))
			if err := d.objs.GlbBinds.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return res, fmt.Errorf("apply tables: remove bind prefix %s: %w", p, err)
			}
			delete(st.trie, k)
			if err := d.deletePorts(old.ports); err != nil {
				return res, fmt.Errorf("apply tables: remove old port blocks of prefix %s: %w", p, err)
			}
			held -= len(old.ports)
			ok = false
		}
		v.PrefixId = st.nextID
		st.nextID++
		ps := &prefixState{value: v, ports: make(map[bpf.DirectorPortKey]bpf.DirectorBindRef, len(ports))}
		for _, e := range ports {
			pk := e.key(v.PrefixId)
			if err := d.objs.GlbPorts.Put(pk, e.ref); err != nil {
				d.deletePorts(ps.ports)
				// Prefixes already switched point at installed tables:
				// packets still flow.
				return res, errors.Join(fmt.Errorf("apply tables: add port block of prefix %s: %w", p, err), retire())
			}
			ps.ports[pk] = e.ref
		}
		held += len(ports)
		if err := d.objs.GlbBinds.Put(k, v); err != nil {
			d.deletePorts(ps.ports)
			return res, errors.Join(fmt.Errorf("apply tables: update bind prefix %s: %w", p, err), retire())
		}
		st.trie[k] = ps
		res.BindsChanged = true
		if ok {
			retired = append(retired, old.ports)
		}
	}
	if err := retire(); err != nil {
		return res, err
	}

	// 4. Free what nothing points at any more.
	for name, ts := range st.tables {
		if names[name] {
			continue
		}
		if err := d.objs.GlbTables.Delete(ts.slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("apply tables: remove table %q: %w", name, err)
		}
		st.tableSlots.free(ts.slot)
		delete(st.tables, name)
		res.Removed = append(res.Removed, name)
	}
	for _, slot := range st.foreign {
		if err := d.objs.GlbTables.Delete(slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("apply tables: remove adopted table slot %d: %w", slot, err)
		}
		st.tableSlots.free(slot)
	}
	st.foreign = nil
	// The bind slots in use are exactly the new binds': those of removed
	// binds, and those an adopted trie used that no new bind took, are
	// free now.
	clear(st.bindSlots.used)
	for _, bi := range newBinds {
		st.bindSlots.used[bi.slot] = true
	}
	st.binds = newBinds
	sort.Strings(res.Swapped)
	sort.Strings(res.Removed)
	return res, nil
}

// deletePorts removes glb_ports entries; ones already gone are fine.
func (d *Dataplane) deletePorts(ports map[bpf.DirectorPortKey]bpf.DirectorBindRef) error {
	var errs []error
	for pk := range ports {
		if err := d.objs.GlbPorts.Delete(pk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TableInfo describes an installed table, for metrics and tests.
type TableInfo struct {
	Name       string
	Slot       uint32
	Width      int    // hops per row; 0 drops the table's packets
	Generation uint64 // how many times it was swapped in since Open
}

// Tables lists the installed tables, by name.
func (d *Dataplane) Tables() []TableInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]TableInfo, 0, len(d.state.tables))
	for name, ts := range d.state.tables {
		out = append(out, TableInfo{Name: name, Slot: ts.slot, Width: ts.width, Generation: ts.generation})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Adopted reports whether Open found tables pinned by an earlier
// glb-director that no Apply has replaced yet.
func (d *Dataplane) Adopted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.state.foreign) > 0
}
