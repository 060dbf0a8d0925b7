package redirect

import (
	"regexp"
	"testing"

	"github.com/glb-project/glb/bpf"
)

// TestOutcomeLabels fails when the Go label table drifts from enum outcome
// in bpf/include/redirect_consts.h.
func TestOutcomeLabels(t *testing.T) {
	if len(outcomeLabels) != int(bpf.RedirectOutcomeOUTCOME_LEN) {
		t.Fatalf("outcomeLabels has %d entries, enum outcome has %d: update outcome_linux.go", len(outcomeLabels), bpf.RedirectOutcomeOUTCOME_LEN)
	}
	spec, err := bpf.LoadRedirect()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	if err := spec.Variables[bpf.RedirectVarOutcomeLen].Get(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != len(outcomeLabels) {
		t.Fatalf("the committed object has %d outcomes, the generated Go %d: run make generate", n, len(outcomeLabels))
	}
	valid := regexp.MustCompile(`^(passed|accepted|forwarded|dropped|malformed)_[a-z_]+$`)
	seen := map[string]bool{}
	for i, l := range outcomeLabels {
		if !valid.MatchString(l) {
			t.Errorf("outcome %d has label %q", i, l)
		}
		if seen[l] {
			t.Errorf("label %q used twice", l)
		}
		seen[l] = true
	}
}
