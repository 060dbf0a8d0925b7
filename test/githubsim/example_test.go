package githubsim_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/glb-project/glb/test/githubsim"
)

// A conditional request answered with 304 costs no rate limit, and Stats
// shows it.
func ExampleServer() {
	var sim githubsim.Server
	sim.AddToken("ghp_example", "bot")
	ts := httptest.NewServer(&sim)
	defer ts.Close()
	defer sim.Close()

	get := func(etag string) *http.Response {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v3/repos/acme/widgets", nil)
		req.Header.Set("Authorization", "Bearer ghp_example")
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		return resp
	}
	first := get("")
	again := get(first.Header.Get("ETag"))
	fmt.Println(first.StatusCode, first.Header.Get("X-RateLimit-Remaining"))
	fmt.Println(again.StatusCode, again.Header.Get("X-RateLimit-Remaining"))
	st := sim.Stats().Labels["bot"]
	fmt.Printf("calls %d, counted %d, not modified %d\n", st.Calls, st.Counted, st.NotModified)
	// Output:
	// 200 4999
	// 304 4999
	// calls 2, counted 1, not modified 1
}
