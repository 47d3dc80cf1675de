package caddyws

import (
	"io"
	"net/http"
	"testing"
)

// TestHarnessServesAndReloads checks the in-process Caddy harness the
// integration tests stand on: a site answers, and a reload through the admin
// API swaps the config.
func TestHarnessServesAndReloads(t *testing.T) {
	tc := startCaddy(t, `http://localhost:@HTTP@ {
	respond "one"
}`)
	get := func() string {
		// No keep-alive: a reused connection would still be served by the old config's server.
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(tc.URL("/"))
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(); got != "one" {
		t.Fatalf("before reload: got %q, want %q", got, "one")
	}
	tc.Reload(`http://localhost:@HTTP@ {
	respond "two"
}`)
	if got := get(); got != "two" {
		t.Fatalf("after reload: got %q, want %q", got, "two")
	}
}
