package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/glb-project/glb/proxy/credentials"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A leader whose client leaves returns at once, and its handler goes on to
// log the credential it used, while the flight it started goes on for the
// followers. The flight must report on a Choice of its own: writing the
// departed leader's would race with that log line.
func TestLeaderLeavingDoesNotShareItsChoice(t *testing.T) {
	reached, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	c := &Coalesce{Next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		defer close(done)
		close(reached)
		<-release
		if ch := credentials.ChoiceFrom(r.Context()); ch != nil {
			ch.Prefer, ch.Used = "bot", "bot" // what the Layer and the pool do
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
	})}

	choice := &credentials.Choice{}
	ctx, cancel := context.WithCancel(credentials.WithChoice(WithPolicy(context.Background(), Policy{Key: "/repos/acme/widgets"}), choice))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://github.invalid/repos/acme/widgets", nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(req)
		errc <- err
	}()
	<-reached
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader whose client left: %v, want context.Canceled", err)
	}
	close(release)
	<-done
	if choice.Used != "" || choice.Prefer != "" {
		t.Errorf("the flight wrote the departed leader's choice: %+v", *choice)
	}
}

// The leader that stays learns which credential answered; followers spent
// nothing and name none.
func TestLeaderLearnsItsCredential(t *testing.T) {
	c := &Coalesce{Next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if ch := credentials.ChoiceFrom(r.Context()); ch != nil {
			ch.Used = "bot"
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
	})}
	choice := &credentials.Choice{}
	ctx := credentials.WithChoice(WithPolicy(context.Background(), Policy{Key: "/repos/acme/widgets"}), choice)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://github.invalid/repos/acme/widgets", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if choice.Used != "bot" {
		t.Fatalf("leader's choice %+v, want Used bot", *choice)
	}
}
