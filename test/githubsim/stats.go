package githubsim

import "maps"

// Stats counts what reached the simulator, per credential label. It is
// what tests use to prove what a proxy in front of it saved.
type Stats struct {
	// Labels maps a credential label ("anonymous" for unauthenticated
	// calls, "app-<id>" for App JWTs, "app-<id>-inst-<id>" for
	// installation tokens) to its counts.
	Labels map[string]LabelStats `json:"labels"`
	// Total sums Labels.
	Total LabelStats `json:"total"`
	// Mints counts installation tokens minted, per installation label.
	Mints map[string]int `json:"mints"`
	// BadCredentials counts requests refused with 401.
	BadCredentials int `json:"bad_credentials"`
}

// LabelStats are the counts for one credential: its calls over all
// resources, the git requests, and the split by resource.
type LabelStats struct {
	ResourceStats
	Git int `json:"git"` // git smart HTTP requests (never counted)
	// Resources splits the API counts by rate-limit resource (core,
	// search, graphql, ...).
	Resources map[string]ResourceStats `json:"resources,omitempty"`
}

// ResourceStats are the counts of API calls.
type ResourceStats struct {
	Calls       int `json:"calls"`        // every request that reached the simulator
	Counted     int `json:"counted"`      // requests that spent primary rate limit
	NotModified int `json:"not_modified"` // 304s (they spend nothing)
	Limited     int `json:"limited"`      // refused by a primary or secondary limit
	Failed      int `json:"failed"`       // failures planned with FailNext
	Points      int `json:"points"`       // GraphQL points spent
}

// outcome is how one API call ended, for the stats.
type outcome struct {
	label       string
	resource    string
	counted     bool
	notModified bool
	limited     bool
	points      int
	git         bool
	failed      bool
}

func (c *ResourceStats) add(o outcome) {
	c.Calls++
	c.Counted += one(o.counted)
	c.NotModified += one(o.notModified)
	c.Limited += one(o.limited)
	c.Failed += one(o.failed)
	c.Points += o.points
}

func one(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Server) recordLocked(o outcome) {
	ls := s.stats.Labels[o.label]
	if o.git {
		ls.Calls++
		ls.Git++
		s.stats.Total.Calls++
		s.stats.Total.Git++
		s.stats.Labels[o.label] = ls
		return
	}
	ls.add(o)
	s.stats.Total.add(o)
	if o.resource != "" {
		if ls.Resources == nil {
			ls.Resources = map[string]ResourceStats{}
		}
		rs := ls.Resources[o.resource]
		rs.add(o)
		ls.Resources[o.resource] = rs
	}
	s.stats.Labels[o.label] = ls
}

func (s *Server) record(o outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(o)
}

// Stats returns a copy of the counts since the start or the last
// ResetStats.
func (s *Server) Stats() Stats {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{Labels: map[string]LabelStats{}, Total: s.stats.Total, Mints: maps.Clone(s.stats.Mints),
		BadCredentials: s.stats.BadCredentials}
	for k, v := range s.stats.Labels {
		v.Resources = maps.Clone(v.Resources)
		out.Labels[k] = v
	}
	out.Total.Resources = nil
	return out
}

// ResetStats zeroes the counts (not the rate limits).
func (s *Server) ResetStats() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{Labels: map[string]LabelStats{}, Mints: map[string]int{}}
}
