package e2e

import "testing"

func TestSmoke(t *testing.T) {
	requirements(t)
	s := startStack(t, nil)
	code, body, err := s.APIGet(s.ClientHTTP(), "/repos/acme/widgets")
	t.Logf("%d %v %.100s", code, err, body)
}
