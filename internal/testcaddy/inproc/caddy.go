// Package inproc runs Caddy inside the test process, on ports from
// testcaddy. It is apart from testcaddy so that packages which only run
// Caddy as a process (the integration module) do not link Caddy's
// standard modules. Caddy is a process-wide singleton: tests that use
// Start must not call t.Parallel().
package inproc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/caddyws/caddyws/internal/testcaddy"
)

// Caddy is Caddy running in the test process. Its Caddyfile may use the
// markers @HTTP@ (the HTTP port), @HTTPS@, @ADMIN@ and @EXTRA@ (one more
// port, for a second site or a metrics listener); Start adds the global
// options block.
type Caddy struct {
	T         testing.TB
	HTTPPort  int
	HTTPSPort int
	AdminPort int
	ExtraPort int
}

// Start loads the sites (site blocks only) into this process's Caddy and
// stops Caddy when the test ends.
func Start(t testing.TB, sites string) *Caddy {
	t.Helper()
	var tc *Caddy
	testcaddy.WithPorts(t, 4, func(p []int) error {
		tc = &Caddy{T: t, HTTPPort: p[0], HTTPSPort: p[1], AdminPort: p[2], ExtraPort: p[3]}
		return tc.Load(sites)
	})
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Logf("stopping caddy: %v", err)
		}
	})
	return tc
}

// Expand replaces the port markers in s.
func (tc *Caddy) Expand(s string) string {
	return strings.NewReplacer(
		"@HTTP@", fmt.Sprint(tc.HTTPPort),
		"@HTTPS@", fmt.Sprint(tc.HTTPSPort),
		"@ADMIN@", fmt.Sprint(tc.AdminPort),
		"@EXTRA@", fmt.Sprint(tc.ExtraPort),
	).Replace(s)
}

// Adapt turns the sites into Caddy JSON with the harness's global options.
func (tc *Caddy) Adapt(sites string) ([]byte, error) {
	full := tc.Expand(`{
	admin localhost:@ADMIN@
	persist_config off
	http_port @HTTP@
	https_port @HTTPS@
	skip_install_trust
	grace_period 2s
	log {
		level ERROR
	}
}
` + sites)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(full), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		tc.T.Logf("caddyfile warning: %s", w.String())
	}
	return cfg, nil
}

// Load loads the sites on tc's ports without the retry Start has: for tests
// of what a refused config does.
func (tc *Caddy) Load(sites string) error {
	cfg, err := tc.Adapt(sites)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

// adminClient talks to the admin API without keep-alive: a connection kept
// from one test's Caddy must not carry a request to the next one's.
var adminClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Reload posts a new config to the admin API's /load, the way `caddy
// reload` does, and fails the test if Caddy refuses it.
func (tc *Caddy) Reload(sites string) {
	tc.T.Helper()
	cfg, err := tc.Adapt(sites)
	if err != nil {
		tc.T.Fatalf("adapting reload config: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, tc.adminURL("/load"), bytes.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate") // reload even when the config is unchanged
	resp, err := adminClient.Do(req)
	if err != nil {
		tc.T.Fatalf("reloading: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tc.T.Fatalf("reload answered %d: %s", resp.StatusCode, body)
	}
	testcaddy.WaitOneListener(tc.T, tc.HTTPPort, tc.HTTPSPort, tc.ExtraPort)
}

// Admin performs a request against the admin API and returns status and body.
func (tc *Caddy) Admin(method, path string, body io.Reader) (int, []byte) {
	tc.T.Helper()
	req, _ := http.NewRequest(method, tc.adminURL(path), body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		tc.T.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (tc *Caddy) adminURL(path string) string {
	return fmt.Sprintf("http://localhost:%d%s", tc.AdminPort, path)
}

// URL returns http://localhost:<HTTPPort><path> (the host "localhost", so
// that the site address matches).
func (tc *Caddy) URL(path string) string {
	return fmt.Sprintf("http://localhost:%d%s", tc.HTTPPort, path)
}

// WSURL returns ws://localhost:<HTTPPort><path>.
func (tc *Caddy) WSURL(path string) string {
	return fmt.Sprintf("ws://localhost:%d%s", tc.HTTPPort, path)
}
