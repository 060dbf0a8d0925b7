package consul

import (
	"errors"
	"strings"
	"testing"

	"github.com/glb-project/glb/director/table"
)

// withStates returns testState with proxy-N set to the given states
// (in both tables where it appears).
func withStates(t *testing.T, states map[string]table.State) *table.Config {
	t.Helper()
	cfg := parseState(t, testState)
	for i := range cfg.Tables {
		for j := range cfg.Tables[i].Backends {
			b := &cfg.Tables[i].Backends[j]
			if s, ok := states[b.Name]; ok {
				b.State, b.Reason, b.By, b.At = s, "earlier change", "bob", t0
			}
		}
	}
	return cfg
}

func TestChangeStateMachine(t *testing.T) {
	all := []table.State{table.Active, table.Filling, table.Draining, table.Inactive}
	legal := map[[2]table.State]bool{
		{table.Filling, table.Active}: true, {table.Filling, table.Draining}: true,
		{table.Active, table.Draining}:  true,
		{table.Draining, table.Filling}: true, {table.Draining, table.Inactive}: true, {table.Draining, table.Active}: true,
		{table.Inactive, table.Filling}: true,
	}
	for _, from := range all {
		for _, to := range all {
			name := from.String() + " to " + to.String()
			t.Run(name, func(t *testing.T) {
				cfg := withStates(t, map[string]table.State{"proxy-3": from})
				a, err := Change{Host: "proxy-3", To: to, Reason: "test", By: "alice", At: t0}.Apply(cfg)
				switch {
				case from == to:
					if err != nil || !a.NoOp {
						t.Fatalf("same state: %+v %v, want a no-op", a, err)
					}
				case legal[[2]table.State{from, to}]:
					if err != nil {
						t.Fatalf("legal transition refused: %v", err)
					}
					b := cfg.Tables[0].FindBackend("proxy-3")
					if b.State != to || b.Reason != "test" || b.By != "alice" || !b.At.Equal(t0) {
						t.Fatalf("backend after change: %+v", b)
					}
				default:
					var te *TransitionError
					if !errors.As(err, &te) {
						t.Fatalf("illegal transition: err %v, want a TransitionError", err)
					}
					// The message names the legal ways out.
					for _, s := range Transitions[from] {
						if !strings.Contains(err.Error(), "glbctl "+Verb(s)) {
							t.Errorf("message %q does not offer %s", err, Verb(s))
						}
					}
					if b := cfg.Tables[0].FindBackend("proxy-3"); b.State != from {
						t.Fatal("a refused change modified the config")
					}
				}
			})
		}
	}
}

func TestChangeOneAtATime(t *testing.T) {
	for _, tc := range []struct {
		name      string
		states    map[string]table.State
		change    Change
		wantSlot  bool   // refused by the one-at-a-time rule
		wantInMsg string // the holder named in the refusal
		advice    string // how to free the slot, for the holder's state
	}{
		{name: "first drain is allowed", change: Change{Host: "proxy-3", To: table.Draining}},
		{name: "second drain is refused", states: map[string]table.State{"proxy-2": table.Draining},
			change: Change{Host: "proxy-3", To: table.Draining}, wantSlot: true, wantInMsg: "proxy-2 (10.1.0.12) is draining (by bob since 2026-03-01T12:00:00Z: \"earlier change\")",
			advice: "glbctl remove proxy-2 once it is drained, or glbctl activate proxy-2 to end the drain"},
		{name: "a filling host holds the slot", states: map[string]table.State{"proxy-2": table.Filling},
			change: Change{Host: "proxy-3", To: table.Draining}, wantSlot: true, wantInMsg: "proxy-2 (10.1.0.12) is filling",
			advice: "glbctl activate proxy-2 once it is trusted, or glbctl drain proxy-2 to abort the fill"},
		{name: "an inactive host holds the slot", states: map[string]table.State{"proxy-4": table.Inactive},
			change: Change{Host: "proxy-3", To: table.Draining}, wantSlot: true, wantInMsg: "proxy-4 (10.1.0.14) is inactive",
			advice: "glbctl fill proxy-4 to bring it back, or delete it from the table: glbctl state export, remove the backend, glbctl state import"},
		{name: "the rule is per table: git-1 drains while proxy-3 drains in the other table",
			states: map[string]table.State{"proxy-3": table.Draining}, change: Change{Host: "git-1", To: table.Draining}},
		{name: "a host shared by two tables is checked in both", states: map[string]table.State{"git-1": table.Draining},
			change: Change{Host: "proxy-1", To: table.Draining}, wantSlot: true, wantInMsg: "git-1"},
		{name: "the slot holder may finish its drain", states: map[string]table.State{"proxy-3": table.Draining, "proxy-2": table.Filling},
			change: Change{Host: "proxy-3", To: table.Inactive}},
		{name: "activating frees the slot even when two hold it", states: map[string]table.State{"proxy-3": table.Draining, "proxy-2": table.Filling},
			change: Change{Host: "proxy-2", To: table.Active}},
		{name: "force overrides the rule", states: map[string]table.State{"proxy-2": table.Draining},
			change: Change{Host: "proxy-3", To: table.Draining, Force: true, Reason: "disk failing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := withStates(t, tc.states)
			tc.change.By, tc.change.At = "alice", t0
			a, err := tc.change.Apply(cfg)
			var se *SlotError
			if tc.wantSlot {
				if !errors.As(err, &se) {
					t.Fatalf("err %v, want a SlotError", err)
				}
				if !strings.Contains(err.Error(), tc.wantInMsg) || !strings.Contains(err.Error(), "--force") {
					t.Fatalf("message %q should name %q and mention --force", err, tc.wantInMsg)
				}
				if !strings.Contains(err.Error(), tc.advice) {
					t.Fatalf("message %q should advise %q", err, tc.advice)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.change.Force {
				if len(a.Overridden) == 0 {
					t.Fatal("forced change lists no overridden holder")
				}
				b := cfg.Tables[0].FindBackend(tc.change.Host)
				if !strings.Contains(b.Reason, "disk failing") || !strings.Contains(b.Reason, "forced over the one-at-a-time rule: proxy-2 draining in github-api") {
					t.Fatalf("forced reason not recorded: %q", b.Reason)
				}
			}
		})
	}
}

func TestChangeFindsHosts(t *testing.T) {
	cfg := parseState(t, testState)
	a, err := Change{Host: "10.1.0.11", To: table.Draining, Reason: "r"}.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "proxy-1" || len(a.Tables) != 2 || a.From != table.Active {
		t.Fatalf("applied %+v: want proxy-1 in both tables", a)
	}
	for _, tb := range cfg.Tables {
		if b := tb.FindBackend("proxy-1"); b.State != table.Draining {
			t.Fatalf("table %s: proxy-1 is %s", tb.Name, b.State)
		}
	}
	_, err = Change{Host: "proxy-9", To: table.Draining}.Apply(cfg)
	if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "proxy-4 (10.1.0.14)") {
		t.Fatalf("unknown host: %v", err)
	}
}
