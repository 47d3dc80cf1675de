package caddyws

// A real Caddy, in this test process, on free loopback ports. caddytest's
// fixed ports (2999/9080/9443) would collide when several test binaries run at
// once, so the integration tests use this instead. One config is loaded at a
// time (Caddy is a process-wide singleton): integration tests must not use
// t.Parallel().

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// testCaddy is a running Caddy whose Caddyfile may use @HTTP@ (an HTTP port),
// @HTTPS@ (an HTTPS port) and @ADMIN@ (the admin port); the global options
// block is added by startCaddy.
type testCaddy struct {
	t         *testing.T
	HTTPPort  int
	HTTPSPort int
	AdminPort int
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCaddy loads the Caddyfile (site blocks only; the global options are
// added here) and stops Caddy when the test ends.
func startCaddy(t *testing.T, sites string) *testCaddy {
	t.Helper()
	// Ports below the ephemeral range (lowPorts), so that other processes'
	// outgoing connections cannot take them between the check and the bind.
	var tc *testCaddy
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		ports := lowPorts(t, 3)
		tc = &testCaddy{t: t, HTTPPort: ports[0], HTTPSPort: ports[1], AdminPort: ports[2]}
		if err = tc.load(sites); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Logf("stopping caddy: %v", err)
		}
	})
	return tc
}

// Expand replaces the port markers in s.
func (tc *testCaddy) Expand(s string) string {
	return strings.NewReplacer(
		"@HTTP@", fmt.Sprint(tc.HTTPPort),
		"@HTTPS@", fmt.Sprint(tc.HTTPSPort),
		"@ADMIN@", fmt.Sprint(tc.AdminPort),
	).Replace(s)
}

// adapt turns the sites into Caddy JSON with this harness's global options.
func (tc *testCaddy) adapt(sites string) ([]byte, error) {
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
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(full), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		tc.t.Logf("caddyfile warning: %s", w.String())
	}
	return cfg, nil
}

func (tc *testCaddy) load(sites string) error {
	cfg, err := tc.adapt(sites)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

// Reload posts a new config to the admin API's /load, the way `caddy reload`
// does, and fails the test if Caddy refuses it.
func (tc *testCaddy) Reload(sites string) {
	tc.t.Helper()
	cfg, err := tc.adapt(sites)
	if err != nil {
		tc.t.Fatalf("adapting reload config: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/load", tc.AdminPort), bytes.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate") // force a reload even when the config is unchanged
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		tc.t.Fatalf("reloading: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tc.t.Fatalf("reload answered %d: %s", resp.StatusCode, body)
	}
}

// Admin performs a request against the admin API and returns status and body.
func (tc *testCaddy) Admin(method, path string, body io.Reader) (int, []byte) {
	tc.t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("http://localhost:%d%s", tc.AdminPort, path), body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		tc.t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// URL returns http://localhost:<HTTPPort><path> (use the host "localhost" so
// the site address matches).
func (tc *testCaddy) URL(path string) string {
	return fmt.Sprintf("http://localhost:%d%s", tc.HTTPPort, path)
}

// WSURL returns ws://localhost:<HTTPPort><path>.
func (tc *testCaddy) WSURL(path string) string {
	return fmt.Sprintf("ws://localhost:%d%s", tc.HTTPPort, path)
}
