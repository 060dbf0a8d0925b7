package dataplane

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
)

// TestAlertRulesNameRealReasons checks that every reason label the alert
// rules in deploy/prometheus match is one the director exports.
func TestAlertRulesNameRealReasons(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/glb-director-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var known []string
	for _, l := range endLabels {
		known = append(known, l)
	}
	found := regexp.MustCompile(`glb_director_end_total\{reason="([a-z_]+)"\}`).FindAllSubmatch(rules, -1)
	if len(found) == 0 {
		t.Fatal("no glb_director_end_total rule found")
	}
	for _, m := range found {
		if !slices.Contains(known, string(m[1])) {
			t.Errorf("alert rule matches reason %q, which glb_director_end_total never has", m[1])
		}
	}
}
