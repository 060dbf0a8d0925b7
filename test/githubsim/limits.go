package githubsim

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Limit is a primary rate limit: N requests (for graphql, N points) per
// Window, counted per credential (per client IP when unauthenticated).
type Limit struct {
	N      int
	Window time.Duration
}

// Rate-limit resources, as GitHub names them in X-RateLimit-Resource.
const (
	ResourceCore       = "core"
	ResourceSearch     = "search"
	ResourceCodeSearch = "code_search"
	ResourceGraphQL    = "graphql"
)

// DefaultLimits are GitHub's documented limits for a personal access token
// or an installation (https://docs.github.com/rest/rate-limit).
func DefaultLimits() map[string]Limit {
	return map[string]Limit{
		"core":                        {5000, time.Hour},
		"search":                      {30, time.Minute},
		"code_search":                 {10, time.Minute},
		"graphql":                     {5000, time.Hour},
		"integration_manifest":        {5000, time.Hour},
		"source_import":               {100, time.Minute},
		"code_scanning_upload":        {1000, time.Hour},
		"code_scanning_autofix":       {10, time.Minute},
		"actions_runner_registration": {10000, time.Hour},
		"scim":                        {15000, time.Hour},
		"dependency_snapshots":        {100, time.Minute},
		"dependency_sbom":             {100, time.Hour},
		"audit_log":                   {1750, time.Hour},
		"audit_log_streaming":         {15, time.Minute},
	}
}

// DefaultAnonymousLimits are GitHub's limits for unauthenticated requests,
// counted per client IP. GraphQL needs authentication.
func DefaultAnonymousLimits() map[string]Limit {
	l := DefaultLimits()
	l["core"] = Limit{60, time.Hour}
	l["search"] = Limit{10, time.Minute}
	l["graphql"] = Limit{0, time.Hour}
	return l
}

// bucket is one credential's primary limit for one resource, in a fixed
// window that starts with its first use (as GitHub's does).
type bucket struct {
	limit int
	used  int
	reset time.Time
}

// rate is what the X-RateLimit-* headers report.
type rate struct {
	limit, used int
	reset       time.Time
	resource    string
}

func (r rate) remaining() int { return max(r.limit-r.used, 0) }

// limitFor returns the limit that applies to a bucket key and resource.
func (s *Server) limitFor(anonymous bool, resource string) Limit {
	table, def := s.Limits, DefaultLimits()
	if anonymous {
		table, def = s.AnonymousLimits, DefaultAnonymousLimits()
	}
	if l, ok := table[resource]; ok {
		if l.Window <= 0 {
			l.Window = def[resource].Window
		}
		if l.Window <= 0 {
			l.Window = time.Hour
		}
		return l
	}
	if l, ok := def[resource]; ok {
		return l
	}
	return def["core"]
}

// bucketLocked returns the bucket for (key, resource), starting a new
// window when the old one has passed. s.mu must be held.
func (s *Server) bucketLocked(key string, anonymous bool, resource string, now time.Time) *bucket {
	id := key + "\x00" + resource
	b := s.buckets[id]
	if b == nil {
		l := s.limitFor(anonymous, resource)
		b = &bucket{limit: l.N, reset: now.Add(l.Window)}
		s.buckets[id] = b
	}
	if !now.Before(b.reset) {
		b.used = 0
		b.reset = now.Add(s.limitFor(anonymous, resource).Window)
	}
	return b
}

func (b *bucket) rate(resource string) rate {
	return rate{limit: b.limit, used: b.used, reset: b.reset, resource: resource}
}

// SetRemaining puts a credential's bucket for resource at n remaining
// requests (points, for graphql) in the current window, to bring it near
// exhaustion in a test. For unauthenticated clients the label is
// "anonymous:<ip>".
func (s *Server) SetRemaining(label, resource string, n int) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucketLocked(label, strings.HasPrefix(label, "anonymous:"), resource, s.now())
	if n > b.limit {
		b.limit = n
	}
	b.used = max(b.limit-n, 0)
}

// SetLimit changes the size of one credential's bucket for resource (for
// example an installation that GitHub gives 15,000 requests an hour).
func (s *Server) SetLimit(label, resource string, n int) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucketLocked(label, strings.HasPrefix(label, "anonymous:"), resource, s.now())
	b.limit = n
}

// TriggerSecondaryLimit makes every request with label's credential fail
// with a secondary rate limit (403, or LimitStatus) and Retry-After until
// retryAfter has passed on the server's clock.
func (s *Server) TriggerSecondaryLimit(label string, retryAfter time.Duration) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secondary[label] = s.now().Add(retryAfter)
}

// ResetLimits forgets every rate-limit bucket and secondary limit, as if
// every window had just passed.
func (s *Server) ResetLimits() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.buckets)
	clear(s.secondary)
}

// retryAfterSeconds rounds up, as a Retry-After header must never be 0
// while the limit still holds.
func retryAfterSeconds(d time.Duration) int {
	return max(int(math.Ceil(d.Seconds())), 1)
}

// rateLimitJSON is the body of GET /rate_limit for the caller's buckets.
func (s *Server) rateLimitJSON(key string, anonymous bool) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	names := map[string]bool{}
	for n := range DefaultLimits() {
		names[n] = true
	}
	for n := range s.Limits {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	resources := map[string]any{}
	for _, n := range sorted {
		r := s.bucketLocked(key, anonymous, n, now).rate(n)
		resources[n] = map[string]any{"limit": r.limit, "used": r.used, "remaining": r.remaining(), "reset": r.reset.Unix()}
	}
	return map[string]any{"resources": resources, "rate": resources["core"]}
}

const (
	docsRateLimits = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
	docsSecondary  = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
)

func primaryMessage(c *credential, requestID string, now time.Time) string {
	support := fmt.Sprintf(" If you reach out to GitHub Support for help, please include the request ID %s and timestamp %s.",
		requestID, now.UTC().Format("2006-01-02 15:04:05 UTC"))
	switch c.kind {
	case kindAnonymous:
		return fmt.Sprintf("API rate limit exceeded for %s. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)", c.ip) + support
	case kindInstallation:
		return fmt.Sprintf("API rate limit exceeded for installation ID %d.", c.installation) + support
	default:
		return fmt.Sprintf("API rate limit exceeded for user ID %d.", c.userID) + support
	}
}

func secondaryMessage(requestID string) string {
	return "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. " +
		"If you reach out to GitHub Support for help, please include the request ID " + requestID + "."
}
