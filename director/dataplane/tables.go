package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/director/table"
)

// Limits of the kernel maps (bpf/include/director.h). Apply checks a set
// of tables against them before it changes anything.
const (
	MaxTables         = 256
	MaxPrefixes       = 8192
	MaxBinds          = 8192
	MaxBindsPerPrefix = 64

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
	trie       map[bpf.DirectorBindKey]bpf.DirectorBindValue
	tableSlots slots
	bindSlots  slots
	// foreign holds table slots an earlier daemon filled: they stay
	// until the first Apply has pointed the trie elsewhere.
	foreign []uint32
}

func (s *state) init() {
	s.tables = map[string]*tableState{}
	s.binds = map[string]BindInfo{}
	s.trie = map[bpf.DirectorBindKey]bpf.DirectorBindValue{}
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
	it := d.objs.GlbBinds.Iterate()
	for it.Next(&key, &val) {
		d.state.trie[key] = val
		for _, e := range val.Entries[:min(int(val.Count), MaxBindsPerPrefix)] {
			if int(e.Bind) < MaxBinds {
				d.state.bindSlots.used[e.Bind] = true
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read pinned bind trie: %w", err)
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
		if len(cover) > MaxBindsPerPrefix {
			return nil, 0, fmt.Errorf("prefix %s is covered by %d binds: the director allows %d per address; merge port ranges", p, len(cover), MaxBindsPerPrefix)
		}
		plan[p] = cover
	}
	return plan, len(all), nil
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

	// 3. The trie: every planned prefix, then remove the rest.
	newTrie := make(map[bpf.DirectorBindKey]bpf.DirectorBindValue, len(plan))
	for p, entries := range plan {
		var v bpf.DirectorBindValue
		v.Count = uint32(len(entries))
		for i, e := range entries {
			v.Entries[i] = bpf.DirectorBindEntry{
				PortStart: e.bind.PortStart,
				PortEnd:   e.bind.PortEnd,
				Proto:     uint8(e.bind.Proto),
				Table:     uint16(st.tables[e.table].slot),
				Bind:      newBinds[e.key].slot,
			}
		}
		k := trieKey(p)
		newTrie[k] = v
		if old, ok := st.trie[k]; ok && old == v {
			continue
		}
		if err := d.objs.GlbBinds.Put(k, v); err != nil {
			// The trie is now partly new, but every entry points at a
			// table that is installed: packets still flow.
			return res, fmt.Errorf("apply tables: update bind prefix %s: %w", p, err)
		}
		st.trie[k] = v
		res.BindsChanged = true
	}
	for k := range st.trie {
		if _, ok := newTrie[k]; ok {
			continue
		}
		if err := d.objs.GlbBinds.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("apply tables: remove bind prefix: %w", err)
		}
		delete(st.trie, k)
		res.BindsChanged = true
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
	for k, bi := range st.binds {
		if _, ok := newBinds[k]; !ok {
			st.bindSlots.free(bi.slot)
		}
	}
	// Slots an adopted trie used but no new bind took are free now too.
	inUse := map[uint32]bool{}
	for _, bi := range newBinds {
		inUse[bi.slot] = true
	}
	for i := range st.bindSlots.used {
		if !inUse[uint32(i)] {
			st.bindSlots.used[i] = false
		}
	}
	st.binds = newBinds
	sort.Strings(res.Swapped)
	sort.Strings(res.Removed)
	return res, nil
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
