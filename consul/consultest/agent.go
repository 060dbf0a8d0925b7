package consultest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// service is a registered service and the IDs of its checks.
type service struct {
	svc    api.AgentService
	checks []string
}

// check is a registered check with its schedule.
type check struct {
	hc            api.HealthCheck
	kind          string // "http", "tcp" or "ttl"
	def           api.AgentServiceCheck
	interval      time.Duration
	timeout       time.Duration
	ttl           time.Duration
	deregAfter    time.Duration
	criticalSince time.Time
	updates       chan struct{} // TTL refreshed
	cancel        context.CancelFunc
}

func (s *Server) node() *api.Node {
	return &api.Node{
		ID: NodeID, Node: NodeName, Address: "127.0.0.1", Datacenter: Datacenter,
		TaggedAddresses: map[string]string{"lan": "127.0.0.1", "wan": "127.0.0.1"},
		Meta:            map[string]string{"consul-network-segment": ""},
		CreateIndex:     1, ModifyIndex: 1,
	}
}

// serfHealth is the node's own check, always passing while the server runs.
func serfHealth() *api.HealthCheck {
	return &api.HealthCheck{
		Node: NodeName, CheckID: "serfHealth", Name: "Serf Health Status",
		Status: api.HealthPassing, Output: "Agent alive and reachable",
		ServiceTags: []string{}, CreateIndex: 1, ModifyIndex: 1,
	}
}

func (s *Server) serveAgent(w http.ResponseWriter, r *http.Request, path string) error {
	switch {
	case path == "service/register":
		return s.register(w, r)
	case strings.HasPrefix(path, "service/deregister/"):
		if r.Method != http.MethodPut {
			return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		}
		id := strings.TrimPrefix(path, "service/deregister/")
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.services[id] == nil {
			return errorf(http.StatusNotFound, "Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)
		}
		s.deregister(id)
		return nil
	case path == "services":
		return onlyGET(r, func() error {
			s.mu.Lock()
			out := map[string]*api.AgentService{}
			for id, sv := range s.services {
				a := sv.svc
				out[id] = &a
			}
			s.mu.Unlock()
			return writeJSON(w, out)
		})
	case strings.HasPrefix(path, "service/"):
		id := strings.TrimPrefix(path, "service/")
		return onlyGET(r, func() error {
			s.mu.Lock()
			sv := s.services[id]
			var a api.AgentService
			if sv != nil {
				a = sv.svc
			}
			s.mu.Unlock()
			if sv == nil {
				return errorf(http.StatusNotFound, "unknown service ID: %s", id)
			}
			return writeJSON(w, &a)
		})
	case path == "checks":
		return onlyGET(r, func() error {
			s.mu.Lock()
			out := map[string]*api.HealthCheck{}
			for id, c := range s.checks {
				hc := c.hc
				out[id] = &hc
			}
			s.mu.Unlock()
			return writeJSON(w, out)
		})
	case strings.HasPrefix(path, "check/"):
		if r.Method != http.MethodPut {
			return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		}
		verb, id, _ := strings.Cut(strings.TrimPrefix(path, "check/"), "/")
		var status, output string
		switch verb {
		case "pass":
			status, output = api.HealthPassing, r.URL.Query().Get("note")
		case "warn":
			status, output = api.HealthWarning, r.URL.Query().Get("note")
		case "fail":
			status, output = api.HealthCritical, r.URL.Query().Get("note")
		case "update":
			var u struct{ Status, Output string }
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&u); err != nil {
				return errorf(http.StatusBadRequest, "Request decode failed: %v", err)
			}
			switch u.Status {
			case api.HealthPassing, api.HealthWarning, api.HealthCritical:
			default:
				return errorf(http.StatusBadRequest, "Invalid check status: %q", u.Status)
			}
			status, output = u.Status, u.Output
		default:
			return errorf(http.StatusNotFound, "consultest does not serve /v1/agent/check/%s", verb)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		c := s.checks[id]
		if c == nil {
			return errorf(http.StatusNotFound, "Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
		}
		if c.kind != "ttl" {
			return errorf(http.StatusInternalServerError, "CheckID %q does not have associated TTL", id)
		}
		s.setStatus(c, status, output)
		select {
		case c.updates <- struct{}{}:
		default:
		}
		return nil
	}
	return errorf(http.StatusNotFound, "consultest does not serve /v1/agent/%s", path)
}

var metaKey = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// validateMeta applies Consul's limits on service metadata.
func validateMeta(meta map[string]string) error {
	if len(meta) > 64 {
		return fmt.Errorf("Node metadata cannot contain more than 64 key/value pairs")
	}
	for k, v := range meta {
		switch {
		case k == "":
			return fmt.Errorf("Key cannot be blank")
		case len(k) > 128:
			return fmt.Errorf("Key is too long (limit: 128 characters)")
		case !metaKey.MatchString(k):
			return fmt.Errorf("Key contains invalid characters")
		case strings.HasPrefix(k, "consul-"):
			return fmt.Errorf("Key prefix 'consul-' is reserved for internal use")
		case len(v) > 512:
			return fmt.Errorf("Value is too long (limit: 512 characters)")
		}
	}
	return nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	var reg api.AgentServiceRegistration
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&reg); err != nil {
		return errorf(http.StatusBadRequest, "Request decode failed: %v", err)
	}
	if reg.Name == "" {
		return errorf(http.StatusBadRequest, "Missing service name")
	}
	if reg.Kind != "" || reg.Connect != nil || reg.Proxy != nil {
		return errorf(http.StatusBadRequest, "consultest does not support Connect services")
	}
	if reg.Port < 0 || reg.Port > 65535 {
		return errorf(http.StatusBadRequest, "Invalid Port: %d", reg.Port)
	}
	if err := validateMeta(reg.Meta); err != nil {
		return errorf(http.StatusBadRequest, "Invalid Service Meta: %v", err)
	}
	id := reg.ID
	if id == "" {
		id = reg.Name
	}
	defs := reg.Checks
	if reg.Check != nil {
		defs = append(api.AgentServiceChecks{reg.Check}, defs...)
	}
	var checks []*check
	for i, d := range defs {
		c, err := s.newCheck(d)
		if err != nil {
			return errorf(http.StatusBadRequest, "Invalid check: %v", err)
		}
		if d.CheckID == "" {
			c.hc.CheckID = "service:" + id
			if len(defs) > 1 {
				c.hc.CheckID = fmt.Sprintf("service:%s:%d", id, i+1)
			}
		}
		if d.Name == "" {
			c.hc.Name = fmt.Sprintf("Service '%s' check", reg.Name)
		}
		c.hc.ServiceID, c.hc.ServiceName = id, reg.Name
		c.hc.ServiceTags = append([]string{}, reg.Tags...)
		checks = append(checks, c)
	}
	weights := api.AgentWeights{Passing: 1, Warning: 1}
	if reg.Weights != nil {
		weights = *reg.Weights
	}
	tags := reg.Tags
	if tags == nil {
		tags = []string{}
	}
	meta := reg.Meta
	if meta == nil {
		meta = map[string]string{}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.next()
	old := s.services[id]
	sv := &service{svc: api.AgentService{
		ID: id, Service: reg.Name, Tags: tags, Meta: meta, Port: reg.Port, Address: reg.Address,
		TaggedAddresses: reg.TaggedAddresses, Weights: weights, EnableTagOverride: reg.EnableTagOverride,
		CreateIndex: idx, ModifyIndex: idx, Datacenter: Datacenter,
	}}
	keep := map[string]bool{}
	if old != nil {
		sv.svc.CreateIndex = old.svc.CreateIndex
		if r.URL.Query().Get("replace-existing-checks") != "true" {
			for _, cid := range old.checks {
				keep[cid] = true
			}
		}
	}
	for _, c := range checks {
		c.hc.CreateIndex, c.hc.ModifyIndex = idx, idx
		if prev := s.checks[c.hc.CheckID]; prev != nil {
			// An unchanged check keeps its status, as a re-registration
			// after an agent restart does in Consul.
			if sameCheck(prev, c) {
				c.hc.Status, c.hc.Output = prev.hc.Status, prev.hc.Output
				c.hc.CreateIndex = prev.hc.CreateIndex
				c.criticalSince = prev.criticalSince
			}
			s.removeCheck(prev.hc.CheckID)
		}
		delete(keep, c.hc.CheckID)
		s.checks[c.hc.CheckID] = c
		sv.checks = append(sv.checks, c.hc.CheckID)
		if s.hs != nil {
			s.startCheck(c)
		}
	}
	if old != nil {
		for _, cid := range old.checks {
			if keep[cid] {
				sv.checks = append(sv.checks, cid)
			} else if s.checks[cid] != nil && !slices.Contains(sv.checks, cid) {
				s.removeCheck(cid)
			}
		}
	}
	s.services[id] = sv
	s.catIndex = idx
	s.wake()
	return nil
}

func sameCheck(a, b *check) bool {
	return a.kind == b.kind && a.hc.Definition.HTTP == b.hc.Definition.HTTP &&
		a.hc.Definition.TCP == b.hc.Definition.TCP && a.interval == b.interval && a.ttl == b.ttl
}

// newCheck parses a check definition. Only HTTP, TCP and TTL checks are
// supported.
func (s *Server) newCheck(d *api.AgentServiceCheck) (*check, error) {
	dur := func(name, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		t, err := time.ParseDuration(v)
		if err != nil || t < 0 {
			return 0, fmt.Errorf("%s %q is not a duration", name, v)
		}
		return t, nil
	}
	c := &check{def: *d, updates: make(chan struct{}, 1)}
	var err error
	if c.interval, err = dur("Interval", d.Interval); err != nil {
		return nil, err
	}
	if c.timeout, err = dur("Timeout", d.Timeout); err != nil {
		return nil, err
	}
	if c.ttl, err = dur("TTL", d.TTL); err != nil {
		return nil, err
	}
	if c.deregAfter, err = dur("DeregisterCriticalServiceAfter", d.DeregisterCriticalServiceAfter); err != nil {
		return nil, err
	}
	kinds := 0
	if d.HTTP != "" {
		c.kind = "http"
		kinds++
	}
	if d.TCP != "" {
		c.kind = "tcp"
		kinds++
	}
	if d.TTL != "" {
		c.kind = "ttl"
		kinds++
	}
	if len(d.Args) > 0 || d.GRPC != "" || d.DockerContainerID != "" || d.H2PING != "" || d.UDP != "" || d.AliasService != "" || d.AliasNode != "" {
		return nil, fmt.Errorf("consultest supports HTTP, TCP and TTL checks only")
	}
	switch {
	case kinds == 0:
		return nil, fmt.Errorf("one of HTTP, TCP or TTL must be set")
	case kinds > 1:
		return nil, fmt.Errorf("only one of HTTP, TCP or TTL may be set")
	case c.kind != "ttl" && c.interval <= 0:
		return nil, fmt.Errorf("Interval must be > 0 for HTTP or TCP checks")
	case c.kind == "ttl" && c.ttl <= 0:
		return nil, fmt.Errorf("TTL must be > 0")
	}
	if minI := s.minInterval(); c.kind != "ttl" && c.interval < minI {
		c.interval = minI
	}
	if c.timeout == 0 {
		c.timeout = 10 * time.Second
	}
	status := api.HealthCritical // Consul's default for a new check
	switch d.Status {
	case "":
	case api.HealthPassing, api.HealthWarning, api.HealthCritical:
		status = d.Status
	default:
		return nil, fmt.Errorf("invalid initial status %q", d.Status)
	}
	c.hc = api.HealthCheck{
		Node: NodeName, CheckID: d.CheckID, Name: d.Name, Status: status, Notes: d.Notes,
		Type: c.kind,
		Definition: api.HealthCheckDefinition{
			HTTP: d.HTTP, Header: d.Header, Method: d.Method, TLSSkipVerify: d.TLSSkipVerify, TCP: d.TCP,
			IntervalDuration: c.interval, TimeoutDuration: c.timeout, DeregisterCriticalServiceAfterDuration: c.deregAfter,
		},
	}
	if status == api.HealthCritical {
		c.criticalSince = time.Now()
	}
	return c, nil
}

func (s *Server) minInterval() time.Duration {
	if s.MinCheckInterval > 0 {
		return s.MinCheckInterval
	}
	return MinInterval
}

// setStatus records a check result; the index moves only when the status
// or output changes. Callers hold s.mu.
func (s *Server) setStatus(c *check, status, output string) {
	if s.checks[c.hc.CheckID] != c {
		return // removed meanwhile
	}
	if status == api.HealthCritical && c.hc.Status != api.HealthCritical {
		c.criticalSince = time.Now()
	}
	if c.hc.Status == status && c.hc.Output == output {
		return
	}
	idx := s.next()
	c.hc.Status, c.hc.Output, c.hc.ModifyIndex = status, output, idx
	s.catIndex = idx
	s.wake()
}

// removeCheck stops and forgets a check. Callers hold s.mu.
func (s *Server) removeCheck(id string) {
	if c := s.checks[id]; c != nil {
		if c.cancel != nil {
			c.cancel()
		}
		delete(s.checks, id)
	}
}

// deregister removes a service and its checks. Callers hold s.mu.
func (s *Server) deregister(id string) {
	sv := s.services[id]
	if sv == nil {
		return
	}
	for _, cid := range sv.checks {
		s.removeCheck(cid)
	}
	delete(s.services, id)
	s.catIndex = s.next()
	s.wake()
}

// startCheck runs a check in the background while the server runs.
// Callers hold s.mu.
func (s *Server) startCheck(c *check) {
	ctx, cancel := context.WithCancel(s.runCtx)
	c.cancel = cancel
	s.runners.Add(1)
	go func() {
		defer s.runners.Done()
		switch c.kind {
		case "ttl":
			s.runTTL(ctx, c)
		default:
			s.runProbe(ctx, c)
		}
	}()
}

// runTTL turns the check critical when no update arrives within its TTL.
func (s *Server) runTTL(ctx context.Context, c *check) {
	t := time.NewTimer(c.ttl)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.updates:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(c.ttl)
		case <-t.C:
			s.mu.Lock()
			s.setStatus(c, api.HealthCritical, "TTL expired")
			s.mu.Unlock()
			t.Reset(c.ttl)
		}
	}
}

// runProbe runs an HTTP or TCP check every interval, after a random
// stagger within the first interval as Consul does.
func (s *Server) runProbe(ctx context.Context, c *check) {
	t := time.NewTimer(rand.N(c.interval))
	defer t.Stop()
	client := &http.Client{
		Timeout: c.timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: c.def.TLSSkipVerify},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var status, output string
		if c.kind == "http" {
			status, output = probeHTTP(ctx, client, &c.def)
		} else {
			status, output = probeTCP(ctx, c.def.TCP, c.timeout)
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.setStatus(c, status, output)
		s.mu.Unlock()
		t.Reset(c.interval)
	}
}

// probeHTTP follows Consul's rules: 2xx is passing, 429 warning, anything
// else (or no answer) critical.
func probeHTTP(ctx context.Context, client *http.Client, d *api.AgentServiceCheck) (string, string) {
	method := d.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, d.HTTP, strings.NewReader(d.Body))
	if err != nil {
		return api.HealthCritical, err.Error()
	}
	for k, vs := range d.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("User-Agent", "Consul Health Check")
	resp, err := client.Do(req)
	if err != nil {
		return api.HealthCritical, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	out := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, d.HTTP, resp.Status, body)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return api.HealthPassing, out
	case resp.StatusCode == http.StatusTooManyRequests:
		return api.HealthWarning, out
	}
	return api.HealthCritical, out
}

func probeTCP(ctx context.Context, addr string, timeout time.Duration) (string, string) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return api.HealthCritical, err.Error()
	}
	conn.Close()
	return api.HealthPassing, fmt.Sprintf("TCP connect %s: Success", addr)
}

// reaper deregisters services with a check critical for longer than its
// DeregisterCriticalServiceAfter.
func (s *Server) reaper(ctx context.Context) {
	defer s.runners.Done()
	every := s.ReapInterval
	if every <= 0 {
		every = ReapInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := time.Now()
		for _, c := range s.checks {
			if c.deregAfter > 0 && c.hc.Status == api.HealthCritical && now.Sub(c.criticalSince) > c.deregAfter {
				s.deregister(c.hc.ServiceID)
			}
		}
		s.mu.Unlock()
	}
}

// entries returns the health entries of a service, sorted by service ID.
// Callers hold s.mu.
func (s *Server) entries(name, tag string, passing bool) []*api.ServiceEntry {
	out := []*api.ServiceEntry{}
	for _, sv := range s.sortedServices() {
		if sv.svc.Service != name || tag != "" && !slices.Contains(sv.svc.Tags, tag) {
			continue
		}
		a := sv.svc
		e := &api.ServiceEntry{Node: s.node(), Service: &a, Checks: api.HealthChecks{serfHealth()}}
		ok := true
		for _, cid := range sv.checks {
			if c := s.checks[cid]; c != nil {
				hc := c.hc
				e.Checks = append(e.Checks, &hc)
				ok = ok && hc.Status == api.HealthPassing
			}
		}
		if passing && !ok {
			continue
		}
		out = append(out, e)
	}
	return out
}

func (s *Server) sortedServices() []*service {
	var list []*service
	for _, sv := range s.services {
		list = append(list, sv)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].svc.ID < list[j].svc.ID })
	return list
}

func (s *Server) serveHealthService(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	passing := q.Has("passing") && q.Get("passing") != "false" && q.Get("passing") != "0"
	return s.blockingRead(w, r, func() (result, error) {
		return result{index: s.catIndex, status: http.StatusOK, body: mustJSON(s.entries(name, q.Get("tag"), passing))}, nil
	})
}

func (s *Server) serveCatalogService(w http.ResponseWriter, r *http.Request, name string) error {
	tag := r.URL.Query().Get("tag")
	return s.blockingRead(w, r, func() (result, error) {
		n := s.node()
		out := []*api.CatalogService{}
		for _, sv := range s.sortedServices() {
			if sv.svc.Service != name || tag != "" && !slices.Contains(sv.svc.Tags, tag) {
				continue
			}
			a := sv.svc
			out = append(out, &api.CatalogService{
				ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
				TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta,
				ServiceID: a.ID, ServiceName: a.Service, ServiceAddress: a.Address,
				ServiceTags: a.Tags, ServiceMeta: a.Meta, ServicePort: a.Port,
				ServiceWeights:           api.Weights{Passing: a.Weights.Passing, Warning: a.Weights.Warning},
				ServiceEnableTagOverride: a.EnableTagOverride,
				CreateIndex:              a.CreateIndex, ModifyIndex: a.ModifyIndex,
			})
		}
		return result{index: s.catIndex, status: http.StatusOK, body: mustJSON(out)}, nil
	})
}

func (s *Server) serveCatalogServices(w http.ResponseWriter, r *http.Request) error {
	return s.blockingRead(w, r, func() (result, error) {
		out := map[string][]string{"consul": {}}
		for _, sv := range s.services {
			tags := out[sv.svc.Service]
			if tags == nil {
				tags = []string{}
			}
			for _, t := range sv.svc.Tags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
			sort.Strings(tags)
			out[sv.svc.Service] = tags
		}
		return result{index: s.catIndex, status: http.StatusOK, body: mustJSON(out)}, nil
	})
}
