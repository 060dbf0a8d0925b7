package redirect

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
)

// TestAlertRulesNameRealOutcomes checks that every outcome label the alert
// rules in deploy/prometheus match is one glb-redirect exports.
func TestAlertRulesNameRealOutcomes(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/glb-director-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := regexp.MustCompile(`glb_redirect_packets_total\{outcome="([a-z_]+)"\}`).FindAllSubmatch(rules, -1)
	if len(found) == 0 {
		t.Fatal("no glb_redirect_packets_total rule found")
	}
	for _, m := range found {
		if !slices.Contains(outcomeLabels[:], string(m[1])) {
			t.Errorf("alert rule matches outcome %q, which glb_redirect_packets_total never has", m[1])
		}
	}
}
