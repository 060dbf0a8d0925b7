package table

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"
)

// Limits of a table. Hop lists travel in the GUE header, so MaxHops also
// bounds the packet overhead (4 bytes per hop after the first).
const (
	DefaultHops = 2
	MaxHops     = 8
	MaxBackends = 4096
)

// Config is a forwarding-table file: one or more independent tables.
type Config struct {
	Tables []Spec `json:"tables"`
	// Healthchecks holds glb-healthcheck's global settings, which a GLB
	// file may carry. glb reads them so such a file loads unchanged, and
	// keeps them so glbctl writes them back, but does not use them:
	// glb-director takes --healthcheck-interval and --healthcheck-timeout.
	// Warnings reports them.
	Healthchecks *GLBHealthchecks `json:"healthchecks,omitempty"`
}

// GLBHealthchecks is the top-level "healthchecks" object of
// glb-healthcheck (github/glb-director src/glb-healthcheck/GLBTable.go).
type GLBHealthchecks struct {
	TimeoutMS  int `json:"timeout_ms,omitempty"`
	IntervalMS int `json:"interval_ms,omitempty"`
	Trigger    int `json:"trigger,omitempty"`
}

// Spec is one table's settings: the binds it serves and the backends it
// spreads them over.
type Spec struct {
	// Name identifies the table in logs, metrics and glbctl. glb-director
	// files may omit it; Parse then names the table "table-N" after its
	// position in the file.
	Name       string    `json:"name,omitempty"`
	HashKey    Key       `json:"hash_key"`
	Seed       Key       `json:"seed"`
	HashFields Fields    `json:"hash_fields,omitempty"`
	Hops       int       `json:"hops,omitempty"`
	Binds      []Bind    `json:"binds"`
	Backends   []Backend `json:"backends"`
}

// Bind is a set of destinations a table serves: every address in Prefix,
// for one protocol, on ports PortStart..PortEnd inclusive.
type Bind struct {
	Prefix    netip.Prefix
	Proto     Proto
	PortStart uint16
	PortEnd   uint16
}

// Backend is a proxy host. Only IPv4 addresses are allowed: GUE's outer
// header, and so every hop, is IPv4 (the inner packet may be IPv6).
type Backend struct {
	IP netip.Addr `json:"ip"`
	// Name is an optional host name for operators ("proxy-2"): glbctl and
	// ChatOps accept it wherever they accept the address.
	Name  string `json:"name,omitempty"`
	State State  `json:"state"`
	// Healthy is the health the config asserts. Nil means healthy until the
	// health checker says otherwise (GLB would treat it as unhealthy).
	Healthy      *bool        `json:"healthy,omitempty"`
	Healthchecks Healthchecks `json:"healthchecks,omitzero"`

	// Who last changed State, why and when: written by glbctl and ChatOps.
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Healthchecks says how the director checks a backend. Zero ports are off.
type Healthchecks struct {
	HTTP    int    `json:"http,omitempty"`     // GET HTTPURI on this port, healthy on 200
	HTTPURI string `json:"http_uri,omitempty"` // default "/"
	TCP     int    `json:"tcp,omitempty"`      // connect to this port
	GUE     int    `json:"gue,omitempty"`      // ICMP echo wrapped in GUE to this UDP port
	// FOU is glb-healthcheck's Foo-over-UDP tunnel check. glb has no FOU
	// (glb-redirect decapsulates GUE itself), so the check is not run: the
	// GUE check covers the same tunnel path. It is kept so GLB files load
	// unchanged and round-trip; Warnings reports it.
	FOU int `json:"fou,omitempty"`
}

// Key is a 16-byte SipHash key, written as 32 hex digits.
type Key [16]byte

// Proto is a bind's transport protocol, as an IP protocol number.
type Proto uint8

// Bind protocols.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// State is a backend's administrative state (DESIGN.md §4):
// filling → active → draining → (filling | inactive).
type State uint8

// Backend states. The zero value is invalid so that a missing state is
// caught by validation.
const (
	Active State = iota + 1
	Filling
	Draining
	Inactive
)

var stateNames = map[State]string{Active: "active", Filling: "filling", Draining: "draining", Inactive: "inactive"}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState parses a state name.
func ParseState(name string) (State, error) {
	for s, n := range stateNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown state %q: use one of active, filling, draining, inactive", name)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) {
	if _, ok := stateNames[s]; !ok {
		return nil, fmt.Errorf("invalid state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	*s = v
	return err
}

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// MarshalText implements encoding.TextMarshaler.
func (p Proto) MarshalText() ([]byte, error) {
	if p != TCP && p != UDP {
		return nil, fmt.Errorf("invalid protocol %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Proto) UnmarshalText(b []byte) error {
	switch string(b) {
	case "tcp":
		*p = TCP
	case "udp":
		*p = UDP
	default:
		return fmt.Errorf("unknown protocol %q: use tcp or udp", b)
	}
	return nil
}

func (k Key) String() string { return hex.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Key) UnmarshalText(b []byte) error {
	if len(b) != 2*len(k) {
		return fmt.Errorf("want 32 hex digits, got %d characters: generate one with `openssl rand -hex 16`", len(b))
	}
	if _, err := hex.Decode(k[:], b); err != nil {
		return fmt.Errorf("not hex (%v): generate one with `openssl rand -hex 16`", err)
	}
	return nil
}

// bindJSON is a bind as written in the file. glb-director accepts either
// "port" or the pair "port_start"/"port_end".
type bindJSON struct {
	IP        string  `json:"ip"`
	Proto     *Proto  `json:"proto"`
	Port      *uint16 `json:"port,omitempty"`
	PortStart *uint16 `json:"port_start,omitempty"`
	PortEnd   *uint16 `json:"port_end,omitempty"`
}

// MarshalJSON writes a single address without a prefix length and a single
// port as "port", as glb-director's own files do.
func (b Bind) MarshalJSON() ([]byte, error) {
	j := bindJSON{IP: b.Prefix.String(), Proto: &b.Proto}
	if b.Prefix.IsSingleIP() {
		j.IP = b.Prefix.Addr().String()
	}
	if b.PortStart == b.PortEnd {
		j.Port = &b.PortStart
	} else {
		j.PortStart, j.PortEnd = &b.PortStart, &b.PortEnd
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *Bind) UnmarshalJSON(data []byte) error {
	var j bindJSON
	if err := strictUnmarshal(data, &j); err != nil {
		return err
	}
	if j.IP == "" {
		return errors.New(`"ip" is missing: give an address or a CIDR prefix`)
	}
	if strings.Contains(j.IP, "/") {
		p, err := netip.ParsePrefix(j.IP)
		if err != nil {
			return fmt.Errorf("ip %q: %v", j.IP, err)
		}
		if p.Masked() != p {
			return fmt.Errorf("ip %q has host bits set: write %s", j.IP, p.Masked())
		}
		b.Prefix = p
	} else {
		a, err := netip.ParseAddr(j.IP)
		if err != nil {
			return fmt.Errorf("ip %q: %v", j.IP, err)
		}
		if a.Zone() != "" {
			return fmt.Errorf("ip %q: zones are not allowed", j.IP)
		}
		b.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if j.Proto == nil {
		return errors.New(`"proto" is missing: use tcp or udp`)
	}
	b.Proto = *j.Proto
	switch {
	case j.Port != nil && (j.PortStart != nil || j.PortEnd != nil):
		return errors.New(`give either "port" or "port_start" and "port_end", not both`)
	case j.Port != nil:
		b.PortStart, b.PortEnd = *j.Port, *j.Port
	case j.PortStart != nil && j.PortEnd != nil:
		b.PortStart, b.PortEnd = *j.PortStart, *j.PortEnd
	default:
		return errors.New(`ports are missing: give "port", or "port_start" and "port_end"`)
	}
	return nil
}

func (b Bind) String() string {
	ports := fmt.Sprint(b.PortStart)
	if b.PortEnd != b.PortStart {
		ports = fmt.Sprintf("%d-%d", b.PortStart, b.PortEnd)
	}
	return fmt.Sprintf("%s %s:%s", b.Proto, b.Prefix, ports)
}

// Contains reports whether the bind serves the destination.
func (b Bind) Contains(proto Proto, dst netip.Addr, port uint16) bool {
	return proto == b.Proto && b.Prefix.Contains(dst) && port >= b.PortStart && port <= b.PortEnd
}

// overlaps reports whether some destination is served by both binds.
func (b Bind) overlaps(o Bind) bool {
	return b.Proto == o.Proto && b.Prefix.Overlaps(o.Prefix) &&
		b.PortStart <= o.PortEnd && o.PortStart <= b.PortEnd
}

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read forwarding table config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a config. Unknown fields are errors, so a
// typo never silently falls back to a default.
func Parse(data []byte) (*Config, error) {
	var raw struct {
		Tables []json.RawMessage `json:"tables"`
		// glb-healthcheck writes "healthchecks": null when unset.
		Healthchecks *GLBHealthchecks `json:"healthchecks"`
	}
	if err := strictUnmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse forwarding table config: %w", err)
	}
	if raw.Tables == nil {
		return nil, errors.New(`parse forwarding table config: "tables" is missing: the file must hold {"tables": [...]}`)
	}
	c := &Config{Tables: make([]Spec, len(raw.Tables)), Healthchecks: raw.Healthchecks}
	var errs []error
	for i, rt := range raw.Tables {
		if err := c.Tables[i].decode(rt); err != nil {
			where := fmt.Sprintf("tables[%d]", i)
			if n := c.Tables[i].Name; n != "" {
				where = fmt.Sprintf("table %q", n)
			}
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if c.Tables[i].Name == "" {
			c.Tables[i].Name = fmt.Sprintf("table-%d", i)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode fills the spec from one element of "tables", naming the field of
// every error.
func (t *Spec) decode(data []byte) error {
	var j struct {
		Name       string            `json:"name"`
		HashKey    *string           `json:"hash_key"`
		Seed       *string           `json:"seed"`
		HashFields []string          `json:"hash_fields"`
		Hops       *int              `json:"hops"`
		Binds      []json.RawMessage `json:"binds"`
		Backends   []json.RawMessage `json:"backends"`
	}
	if err := strictUnmarshal(data, &j); err != nil {
		return err
	}
	t.Name = j.Name
	var errs []error
	if j.Hops != nil {
		// Spec.Hops uses 0 for "absent, the default": an explicit 0
		// would silently become 2 hops.
		if *j.Hops == 0 {
			errs = append(errs, fmt.Errorf("hops is 0: use 1..%d, or leave hops out for the default %d", MaxHops, DefaultHops))
		}
		t.Hops = *j.Hops
	}
	for _, k := range []struct {
		name string
		hex  *string
		dst  *Key
	}{{"hash_key", j.HashKey, &t.HashKey}, {"seed", j.Seed, &t.Seed}} {
		if k.hex == nil {
			errs = append(errs, fmt.Errorf("%s is missing: set 32 random hex digits (`openssl rand -hex 16`), the same on every director", k.name))
			continue
		}
		if err := k.dst.UnmarshalText([]byte(*k.hex)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.name, err))
		}
	}
	if j.HashFields != nil {
		f, err := ParseFields(j.HashFields)
		if err != nil {
			errs = append(errs, fmt.Errorf("hash_fields: %w", err))
		}
		t.HashFields = f
	}
	if j.Binds == nil {
		errs = append(errs, errors.New(`binds is missing: add at least one {"ip", "proto", "port"}`))
	}
	t.Binds = make([]Bind, len(j.Binds))
	for i, rb := range j.Binds {
		if err := t.Binds[i].UnmarshalJSON(rb); err != nil {
			errs = append(errs, fmt.Errorf("binds[%d]: %w", i, err))
		}
	}
	if j.Backends == nil {
		errs = append(errs, errors.New(`backends is missing: add {"ip", "state"} for every proxy host, or [] for none`))
	}
	t.Backends = make([]Backend, len(j.Backends))
	for i, rb := range j.Backends {
		if err := t.Backends[i].decode(rb); err != nil {
			errs = append(errs, fmt.Errorf("backends[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Host is how operators name the backend: its name, or its address.
func (b Backend) Host() string {
	if b.Name != "" {
		return b.Name
	}
	return b.IP.String()
}

// HostLabel names the backend with its address: "proxy-2 (10.1.0.12)", or
// the address alone.
func HostLabel(ip netip.Addr, name string) string {
	if name != "" {
		return fmt.Sprintf("%s (%s)", name, ip)
	}
	return ip.String()
}

// decode fills the backend from its JSON object, naming the field of every
// error.
func (b *Backend) decode(data []byte) error {
	var j struct {
		IP           string       `json:"ip"`
		Name         string       `json:"name"`
		State        string       `json:"state"`
		Healthy      *bool        `json:"healthy"`
		Healthchecks Healthchecks `json:"healthchecks"`
		Reason       string       `json:"reason"`
		By           string       `json:"by"`
		At           time.Time    `json:"at"`
	}
	if err := strictUnmarshal(data, &j); err != nil {
		return err
	}
	var errs []error
	if j.IP == "" {
		errs = append(errs, errors.New(`ip is missing: give the proxy host's IPv4 address`))
	} else if a, err := netip.ParseAddr(j.IP); err != nil {
		errs = append(errs, fmt.Errorf("ip: %v", err))
	} else {
		b.IP = a
	}
	if j.State == "" {
		errs = append(errs, errors.New("state is missing: use one of active, filling, draining, inactive"))
	} else if s, err := ParseState(j.State); err != nil {
		errs = append(errs, fmt.Errorf("state: %w", err))
	} else {
		b.State = s
	}
	b.Name, b.Healthy, b.Healthchecks = j.Name, j.Healthy, j.Healthchecks
	b.Reason, b.By, b.At = j.Reason, j.By, j.At
	return errors.Join(errs...)
}

// Marshal encodes the config as indented JSON that Parse reads back.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Table returns the named table, or nil.
func (c *Config) Table(name string) *Spec {
	for i := range c.Tables {
		if c.Tables[i].Name == name {
			return &c.Tables[i]
		}
	}
	return nil
}

// Match returns the table and bind that serve a packet, as the XDP director
// picks them: among the binds whose prefix holds p.Dst (and, unless
// p.BindProto is 0, whose protocol and port range match), the one with the
// longest prefix, then the first in the file. It returns nil when no bind
// serves the packet: the director passes it to the host.
func (c *Config) Match(p Packet) (*Spec, int) {
	var best *Spec
	bestBind, bestBits := -1, -1
	for i := range c.Tables {
		for j, b := range c.Tables[i].Binds {
			if !b.Prefix.Contains(p.Dst) || b.Prefix.Bits() <= bestBits {
				continue
			}
			if p.BindProto != 0 && !b.Contains(p.BindProto, p.Dst, p.Port) {
				continue
			}
			best, bestBind, bestBits = &c.Tables[i], j, b.Prefix.Bits()
		}
	}
	return best, bestBind
}

// Validate checks every table and the binds across tables. Errors name the
// table, the field and the fix.
func (c *Config) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i := range c.Tables {
		t := &c.Tables[i]
		if names[t.Name] {
			errs = append(errs, fmt.Errorf("tables[%d]: name %q is used twice: give every table its own name", i, t.Name))
		}
		names[t.Name] = true
		if err := t.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	// Binds may span tables (different ports of one VIP), but no packet
	// may match two of them.
	type at struct {
		table string
		i     int
		b     Bind
	}
	var all []at
	for _, t := range c.Tables {
		for i, b := range t.Binds {
			for _, o := range all {
				if o.b.overlaps(b) {
					errs = append(errs, fmt.Errorf("table %q: binds[%d] (%s) overlaps table %q binds[%d] (%s): a packet must match one bind only; narrow the prefix or the port range",
						t.Name, i, b, o.table, o.i, o.b))
				}
			}
			all = append(all, at{t.Name, i, b})
		}
	}
	return errors.Join(errs...)
}

// Validate checks one table.
func (t *Spec) Validate() error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("table %q: "+format, append([]any{t.Name}, args...)...))
	}
	if t.Name == "" {
		fail("name is empty: give the table a name")
	}
	if t.HashKey == (Key{}) {
		fail("hash_key is missing or all zero: set 32 random hex digits (`openssl rand -hex 16`), the same on every director")
	}
	if t.Seed == (Key{}) {
		fail("seed is missing or all zero: set 32 random hex digits (`openssl rand -hex 16`), the same on every director")
	}
	if t.Hops < 0 || t.Hops > MaxHops {
		fail("hops is %d: use 1..%d, or leave hops out for the default %d", t.Hops, MaxHops, DefaultHops)
	}
	if t.HashFields&^allFields != 0 {
		fail("hash_fields has unknown bits %#x", uint8(t.HashFields))
	}
	if len(t.Binds) == 0 {
		fail(`binds is empty: add at least one {"ip", "proto", "port"}`)
	}
	for i, b := range t.Binds {
		if b.PortStart > b.PortEnd {
			fail("binds[%d]: port_start %d is above port_end %d: swap them", i, b.PortStart, b.PortEnd)
		}
		if b.Proto != TCP && b.Proto != UDP {
			fail("binds[%d]: protocol %d: use tcp or udp", i, b.Proto)
		}
		if !b.Prefix.IsValid() {
			fail("binds[%d]: ip is missing", i)
		} else if b.Prefix.Bits() == 0 {
			// A catch-all bind would take every packet to this
			// director's own addresses too (SSH, BGP, health check
			// replies) and wrap it in GUE.
			fail("binds[%d]: ip %s matches every address, the director's own included (its SSH and BGP would be sent into GUE): bind the VIP prefixes you announce", i, b.Prefix)
		}
		for j := range i {
			if t.Binds[j].overlaps(b) {
				fail("binds[%d] (%s) overlaps binds[%d] (%s): a packet must match one bind only", i, b, j, t.Binds[j])
			}
		}
	}
	if len(t.Backends) > MaxBackends {
		fail("%d backends: at most %d per table", len(t.Backends), MaxBackends)
	}
	seen := map[netip.Addr]int{}
	names := map[string]int{}
	for i, be := range t.Backends {
		if j, dup := names[be.Name]; dup && be.Name != "" {
			fail("backends[%d]: name %q is also backends[%d]: give every host its own name", i, be.Name, j)
		}
		if be.Name != "" {
			names[be.Name] = i
			if _, err := netip.ParseAddr(be.Name); err == nil {
				fail("backends[%d]: name %q looks like an address: use a host name such as proxy-2", i, be.Name)
			}
		}
		switch {
		case !be.IP.IsValid():
			fail("backends[%d]: ip is missing", i)
		case !be.IP.Is4():
			fail("backends[%d]: ip %s is not IPv4: GUE's outer header is IPv4, so every proxy host needs an IPv4 address", i, be.IP)
		case !unicast(be.IP):
			fail("backends[%d]: ip %s is not a unicast host address (0/8, loopback, multicast or 240/4 reserved): give the proxy host's own IPv4 address", i, be.IP)
		}
		if j, dup := seen[be.IP]; dup && be.IP.IsValid() {
			fail("backends[%d]: ip %s is also backends[%d]: list every backend once", i, be.IP, j)
		}
		seen[be.IP] = i
		if _, ok := stateNames[be.State]; !ok {
			fail("backends[%d] (%s): state is missing: use one of active, filling, draining, inactive", i, be.IP)
		}
		hc := be.Healthchecks
		for _, p := range []struct {
			name string
			port int
		}{{"http", hc.HTTP}, {"tcp", hc.TCP}, {"gue", hc.GUE}, {"fou", hc.FOU}} {
			if p.port < 0 || p.port > 65535 {
				fail("backends[%d] (%s): healthchecks.%s port %d: use 1..65535, or leave it out", i, be.IP, p.name, p.port)
			}
		}
		if hc.HTTPURI != "" && !strings.HasPrefix(hc.HTTPURI, "/") {
			fail("backends[%d] (%s): healthchecks.http_uri %q must start with /", i, be.IP, hc.HTTPURI)
		}
	}
	return errors.Join(errs...)
}

// unicast reports whether a can be a proxy host's address: the outer
// destination of a GUE packet.
//
// For IPv4 it refuses the blocks glb-redirect will not forward to
// (malformed_hop_address): 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and
// 240.0.0.0/4, broadcast included.
func unicast(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		return b[0] != 0 && b[0] != 127 && b[0] < 224
	}
	return !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast()
}

// Warnings lists what a valid config holds that glb accepts but does not
// use, one sentence each, naming the table and backend. glb-director logs
// them at every load; glbctl may print them.
func (c *Config) Warnings() []string {
	var w []string
	if h := c.Healthchecks; h != nil && *h != (GLBHealthchecks{}) {
		w = append(w, "healthchecks (glb-healthcheck's timeout_ms, interval_ms, trigger) is ignored: "+
			"set --healthcheck-timeout and --healthcheck-interval on glb-director; a host changes health after 3 equal results")
	}
	for _, t := range c.Tables {
		for i, be := range t.Backends {
			if be.Healthchecks.FOU == 0 {
				continue
			}
			msg := fmt.Sprintf("table %q: backends[%d] (%s): healthchecks.fou is ignored: glb has no FOU tunnel (glb-redirect decapsulates GUE itself)", t.Name, i, be.IP)
			if be.Healthchecks.GUE == 0 {
				msg += `; add "gue": 19523 to check the tunnel path`
			} else {
				msg += "; the gue check covers the tunnel path"
			}
			w = append(w, msg)
		}
	}
	return w
}

// HopCount returns the configured hops per row, with the default applied.
func (t *Spec) HopCount() int {
	if t.Hops == 0 {
		return DefaultHops
	}
	return t.Hops
}

// Fields returns the configured hash fields, with the default applied.
func (t *Spec) Fields() Fields {
	if t.HashFields == 0 {
		return SrcAddr
	}
	return t.HashFields
}

// Backend returns the backend with the address, or nil.
func (t *Spec) Backend(ip netip.Addr) *Backend {
	for i := range t.Backends {
		if t.Backends[i].IP == ip {
			return &t.Backends[i]
		}
	}
	return nil
}

// FindBackend returns the backend whose address or name is host, or nil.
func (t *Spec) FindBackend(host string) *Backend {
	for i := range t.Backends {
		if t.Backends[i].Name == host && host != "" || t.Backends[i].IP.String() == host {
			return &t.Backends[i]
		}
	}
	return nil
}

// Clone returns a deep copy of the config.
func (c *Config) Clone() *Config {
	n := &Config{Tables: make([]Spec, len(c.Tables))}
	if c.Healthchecks != nil {
		h := *c.Healthchecks
		n.Healthchecks = &h
	}
	for i, t := range c.Tables {
		t.Binds = append([]Bind(nil), t.Binds...)
		t.Backends = append([]Backend(nil), t.Backends...)
		for j := range t.Backends {
			if h := t.Backends[j].Healthy; h != nil {
				v := *h
				t.Backends[j].Healthy = &v
			}
		}
		n.Tables[i] = t
	}
	return n
}

// strictUnmarshal decodes one JSON value and rejects unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return explainJSON(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// explainJSON turns decoder errors into messages that say where and what.
func explainJSON(data []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %v", line, err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Type != nil && typ.Type.Kind() == reflect.Uint16 {
			return fmt.Errorf("field %q: got JSON %s: ports are 0–65535", typ.Field, typ.Value)
		}
		return fmt.Errorf("field %q: want a %s, got JSON %s", typ.Field, typ.Type, typ.Value)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s: check the spelling (see docs/director.md for every field)", msg)
	}
	return err
}
