package redirect

import (
	"slices"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
)

// TestAlertRulesNameRealOutcomes checks that every outcome label the alert
// rules match is one glb-redirect exports.
func TestAlertRulesNameRealOutcomes(t *testing.T) {
	for _, v := range testenv.RuleLabelValues(t, "deploy/prometheus/glb-director-alerts.yaml", "glb_redirect_packets_total", "outcome") {
		if !slices.Contains(outcomeLabels[:], v) {
			t.Errorf("alert rule matches outcome %q, which glb_redirect_packets_total never has", v)
		}
	}
}
