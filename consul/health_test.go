package consul

import (
	"strings"
	"testing"
)

func TestDecodeHealthReport(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		bad      string // substring of the error; empty: decodes
	}{
		{"a report", `{"source":"director-1","at":"2026-03-01T12:00:00Z","backends":{"10.1.0.11":true,"10.1.0.12":false}}`, ""},
		{"an unknown field", `{"source":"director-1","backends":{},"extra":1}`, "unknown field"},
		{"trailing data", `{"source":"director-1","backends":{}} {}`, "trailing data"},
		{"not JSON", `director-1`, "decode health report"},
		{"a source that is no host name", `{"source":"../etc","backends":{}}`, "use the director's host name"},
		{"an IPv6 backend", `{"source":"director-1","backends":{"2001:db8::1":true}}`, "is not IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeHealthReport([]byte(tc.in))
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("DecodeHealthReport: %v", err)
			case tc.bad == "" && (r.Source != "director-1" || len(r.Backends) != 2):
				t.Fatalf("decoded %+v", r)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Fatalf("DecodeHealthReport = %+v, %v; want an error with %q", r, err, tc.bad)
			}
		})
	}
}
