package dataplane

import (
	"slices"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
)

// TestAlertRulesNameRealReasons checks that every reason label the alert
// rules match is one the director exports.
func TestAlertRulesNameRealReasons(t *testing.T) {
	var known []string
	for _, l := range endLabels {
		known = append(known, l)
	}
	for _, v := range testenv.RuleLabelValues(t, "deploy/prometheus/glb-director-alerts.yaml", "glb_director_end_total", "reason") {
		if !slices.Contains(known, v) {
			t.Errorf("alert rule matches reason %q, which glb_director_end_total never has", v)
		}
	}
}
