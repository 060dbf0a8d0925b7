package consul

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/hashicorp/consul/api"
)

// The keys under a Consul PREFIX (docs/operations.md describes them for
// operators):
//
//	PREFIX/tables/<name>   a table as in the JSON file (DESIGN.md §4), with its
//	                       backends; their "state" is the baseline
//	PREFIX/hosts/<ip>      a host's admin state, {"state","reason","by","at"};
//	                       it overrides the baseline in every table
//	PREFIX/serial          {"serial","at"}: bumped by every glbctl write, which
//	                       makes writers take turns (check-and-set)
//	PREFIX/health/<source> a director's HealthReport
//	PREFIX/proxy/clients   glb-proxy's client registry (YAML, DESIGN.md §9)
const (
	tablesDir  = "tables/"
	hostsDir   = "hosts/"
	healthDir  = "health/"
	serialKey  = "serial"
	ClientsKey = "proxy/clients"
)

// HostRecord is the value of PREFIX/hosts/<ip>.
type HostRecord struct {
	State  table.State `json:"state"`
	Reason string      `json:"reason,omitempty"`
	By     string      `json:"by,omitempty"`
	At     time.Time   `json:"at,omitzero"`
}

func recordOf(b *table.Backend) HostRecord {
	return HostRecord{State: b.State, Reason: b.Reason, By: b.By, At: b.At}
}

func (h HostRecord) equal(o HostRecord) bool {
	return h.State == o.State && h.Reason == o.Reason && h.By == o.By && h.At.Equal(o.At)
}

// strictDecode decodes one JSON value, rejecting unknown fields and
// trailing data.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// DecodeHost parses the value of PREFIX/hosts/<ip>.
func DecodeHost(data []byte) (HostRecord, error) {
	var h HostRecord
	if err := strictDecode(data, &h); err != nil {
		return HostRecord{}, fmt.Errorf(`want {"state","reason","by","at"}: %w`, err)
	}
	if h.State == 0 {
		return HostRecord{}, errors.New("state is missing: use one of active, filling, draining, inactive")
	}
	return h, nil
}

// DecodeTable parses the value of PREFIX/tables/<name>: one table as in
// the JSON file. A "name" field, if present, must match the key.
func DecodeTable(name string, data []byte) (*table.Spec, error) {
	if err := validTableName(name); err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, fmt.Errorf("want a JSON object: %w", err)
	}
	if raw, ok := obj["name"]; ok {
		var n string
		if err := json.Unmarshal(raw, &n); err != nil || n != name {
			return nil, fmt.Errorf("name %s does not match the key's table name %q: drop it or make them equal", raw, name)
		}
	}
	obj["name"], _ = json.Marshal(name)
	doc, err := json.Marshal(map[string]any{"tables": []any{obj}})
	if err != nil {
		return nil, err
	}
	cfg, err := table.Parse(doc)
	if err != nil {
		return nil, err
	}
	return &cfg.Tables[0], nil
}

func validTableName(name string) error {
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		return fmt.Errorf("table name %q: in Consul a table name must be non-empty, without '/' or spaces", name)
	}
	return nil
}

// serialRecord is the value of PREFIX/serial.
type serialRecord struct {
	Serial uint64    `json:"serial"`
	At     time.Time `json:"at,omitzero"`
}

// kvState is a decoded prefix: the stored pieces with their modify
// indexes, and the merged config.
type kvState struct {
	base      map[string]*table.Spec
	baseIdx   map[string]uint64
	hosts     map[netip.Addr]HostRecord
	hostIdx   map[netip.Addr]uint64
	serial    uint64
	serialIdx uint64
	cfg       *table.Config
}

// decodeKV decodes the pairs under prefix ("glb", no trailing slash). Keys
// outside tables/, hosts/ and serial are not state and are skipped.
func decodeKV(prefix string, pairs api.KVPairs) (*kvState, error) {
	s := &kvState{
		base: map[string]*table.Spec{}, baseIdx: map[string]uint64{},
		hosts: map[netip.Addr]HostRecord{}, hostIdx: map[netip.Addr]uint64{},
	}
	var errs []error
	for _, p := range pairs {
		if p == nil {
			continue
		}
		rel, ok := strings.CutPrefix(p.Key, prefix+"/")
		if !ok || strings.HasSuffix(rel, "/") && len(p.Value) == 0 {
			continue // outside the prefix, or a "folder" made by the UI
		}
		switch {
		case strings.HasPrefix(rel, tablesDir):
			name := strings.TrimPrefix(rel, tablesDir)
			spec, err := DecodeTable(name, p.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Key, err))
				continue
			}
			s.base[name], s.baseIdx[name] = spec, p.ModifyIndex
		case strings.HasPrefix(rel, hostsDir):
			ip, err := netip.ParseAddr(strings.TrimPrefix(rel, hostsDir))
			if err != nil || !ip.Is4() {
				errs = append(errs, fmt.Errorf("%s: the key must end in the host's IPv4 address", p.Key))
				continue
			}
			h, err := DecodeHost(p.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Key, err))
				continue
			}
			s.hosts[ip], s.hostIdx[ip] = h, p.ModifyIndex
		case rel == serialKey:
			var r serialRecord
			if err := strictDecode(p.Value, &r); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Key, err))
				continue
			}
			s.serial, s.serialIdx = r.Serial, p.ModifyIndex
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.cfg = merge(s.base, s.hosts)
	if err := s.cfg.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// merge builds the effective config: the tables sorted by name, with each
// host's record overriding its baseline state.
func merge(base map[string]*table.Spec, hosts map[netip.Addr]HostRecord) *table.Config {
	names := make([]string, 0, len(base))
	for n := range base {
		names = append(names, n)
	}
	sort.Strings(names)
	cfg := &table.Config{Tables: []table.Spec{}}
	for _, n := range names {
		cfg.Tables = append(cfg.Tables, *base[n])
	}
	cfg = cfg.Clone()
	for i := range cfg.Tables {
		for j := range cfg.Tables[i].Backends {
			b := &cfg.Tables[i].Backends[j]
			if h, ok := hosts[b.IP]; ok {
				b.State, b.Reason, b.By, b.At = h.State, h.Reason, h.By, h.At
			}
		}
	}
	return cfg
}

// plan computes the writes that turn the stored state old into the
// effective config next, as transaction operations. Host state changes go
// to PREFIX/hosts/<ip>; everything else to PREFIX/tables/<name>. Every
// write is check-and-set against what was read, and PREFIX/serial is
// bumped in the same transaction, so concurrent writers serialise.
func plan(prefix string, old *kvState, next *table.Config, now time.Time) (api.TxnOps, error) {
	var ops api.TxnOps
	key := func(rel string) string { return prefix + "/" + rel }
	cas := func(rel string, value []byte, index uint64) {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key(rel), Value: value, Index: index}})
	}

	// The new baselines: a backend that was in the table keeps its stored
	// baseline state; new backends bring theirs.
	newBase := map[string]*table.Spec{}
	for i := range next.Tables {
		t := next.Tables[i]
		if err := validTableName(t.Name); err != nil {
			return nil, err
		}
		t.Backends = append([]table.Backend(nil), t.Backends...)
		if ob := old.base[t.Name]; ob != nil {
			for j := range t.Backends {
				if b := ob.Backend(t.Backends[j].IP); b != nil {
					t.Backends[j].State, t.Backends[j].Reason, t.Backends[j].By, t.Backends[j].At = b.State, b.Reason, b.By, b.At
				}
			}
		}
		newBase[t.Name] = &t
	}

	// Host records: one per address, so every table must agree.
	want := map[netip.Addr]HostRecord{}
	where := map[netip.Addr]string{}
	needed := map[netip.Addr]bool{}
	var ips []netip.Addr
	for _, t := range next.Tables {
		for j := range t.Backends {
			b := &t.Backends[j]
			r := recordOf(b)
			if prev, ok := want[b.IP]; ok {
				if !prev.equal(r) {
					return nil, fmt.Errorf("host %s is %s in table %s but %s in table %s: in Consul a host has one state (key %s), so set it the same everywhere",
						b.IP, prev.State, where[b.IP], r.State, t.Name, key(hostsDir+b.IP.String()))
				}
			} else {
				want[b.IP], where[b.IP] = r, t.Name
				ips = append(ips, b.IP)
			}
			if !recordOf(newBase[t.Name].Backend(b.IP)).equal(r) {
				needed[b.IP] = true
			}
		}
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	for _, ip := range ips {
		r := want[ip]
		cur, has := old.hosts[ip]
		if has && cur.equal(r) || !has && !needed[ip] {
			continue
		}
		v, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		cas(hostsDir+ip.String(), v, old.hostIdx[ip])
	}

	var names []string
	for n := range newBase {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v, err := json.Marshal(newBase[n])
		if err != nil {
			return nil, err
		}
		if ob := old.base[n]; ob != nil {
			ov, _ := json.Marshal(ob)
			if bytes.Equal(ov, v) {
				continue
			}
		}
		cas(tablesDir+n, v, old.baseIdx[n])
	}
	var gone []string
	for n := range old.base {
		if newBase[n] == nil {
			gone = append(gone, n)
		}
	}
	sort.Strings(gone)
	for _, n := range gone {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: key(tablesDir + n), Index: old.baseIdx[n]}})
	}
	if len(ops) == 0 {
		return nil, nil
	}
	serial, _ := json.Marshal(serialRecord{Serial: old.serial + 1, At: now.UTC()})
	cas(serialKey, serial, old.serialIdx)
	if len(ops) > maxTxnOps {
		return nil, fmt.Errorf("this change needs %d Consul operations, more than the %d one transaction may hold: split it (e.g. import one table at a time)", len(ops), maxTxnOps)
	}
	return ops, nil
}

// maxTxnOps is Consul's limit on operations per transaction.
const maxTxnOps = 128
