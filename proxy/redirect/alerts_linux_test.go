package redirect

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
)

const alertRules = "deploy/prometheus/glb-director-alerts.yaml"

// TestAlertRulesNameRealOutcomes checks that every outcome label the alert
// rules match is one glb-redirect exports, that every outcome regex of
// the rules matches some real outcome, and that every drop (malformed_*
// and dropped_*) and forwarded_to_self is watched by some rule.
func TestAlertRulesNameRealOutcomes(t *testing.T) {
	exact := testenv.RuleLabelValues(t, alertRules, "glb_redirect_packets_total", "outcome")
	for _, v := range exact {
		if !slices.Contains(outcomeLabels[:], v) {
			t.Errorf("alert rule matches outcome %q, which glb_redirect_packets_total never has", v)
		}
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, alertRules))
	if err != nil {
		t.Fatal(err)
	}
	var res []*regexp.Regexp
	for _, m := range regexp.MustCompile(`glb_redirect_packets_total\{outcome=~"([^"]+)"\}`).FindAllSubmatch(rules, -1) {
		re, err := regexp.Compile("^(?:" + string(m[1]) + ")$") // Prometheus anchors its regexes
		if err != nil {
			t.Fatalf("rule regex %q: %v", m[1], err)
		}
		if !slices.ContainsFunc(outcomeLabels[:], re.MatchString) {
			t.Errorf("alert rule regex %q matches no outcome", m[1])
		}
		res = append(res, re)
	}
	for _, l := range outcomeLabels {
		if !strings.HasPrefix(l, "malformed_") && !strings.HasPrefix(l, "dropped_") && l != "forwarded_to_self" {
			continue
		}
		if !slices.Contains(exact, l) && !slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(l) }) {
			t.Errorf("no alert rule watches outcome %s", l)
		}
	}
	for _, metric := range []string{"glb_redirect_collection_errors_total", "glb_redirect_info", `up{job="glb-redirect"}`} {
		if !strings.Contains(string(rules), metric) {
			t.Errorf("no alert rule uses %s", metric)
		}
	}
}
