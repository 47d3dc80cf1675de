package caddyws

// The root package's names for internal/testcaddy and its inproc: a real Caddy in this test
// process on reserved loopback ports. One config is loaded at a time (Caddy
// is a process-wide singleton): integration tests must not use t.Parallel().

import (
	"io"
	"testing"

	"github.com/caddyws/caddyws/internal/testcaddy"
	"github.com/caddyws/caddyws/internal/testcaddy/inproc"
)

// testCaddy is a running Caddy whose Caddyfile may use @HTTP@ (an HTTP port),
// @HTTPS@ (an HTTPS port), @ADMIN@ (the admin port) and @EXTRA@ (one more
// port); the global options block is added by startCaddy.
type testCaddy struct {
	t         *testing.T
	HTTPPort  int
	HTTPSPort int
	AdminPort int
	ExtraPort int
}

func (tc *testCaddy) c() *inproc.Caddy {
	return &inproc.Caddy{T: tc.t, HTTPPort: tc.HTTPPort, HTTPSPort: tc.HTTPSPort, AdminPort: tc.AdminPort, ExtraPort: tc.ExtraPort}
}

func wrap(t *testing.T, c *inproc.Caddy) *testCaddy {
	return &testCaddy{t: t, HTTPPort: c.HTTPPort, HTTPSPort: c.HTTPSPort, AdminPort: c.AdminPort, ExtraPort: c.ExtraPort}
}

// freePort returns a port reserved for this test (testcaddy.Port).
func freePort(t testing.TB) int {
	t.Helper()
	return testcaddy.Port(t)
}

// lowPorts returns n distinct ports reserved for this test (testcaddy.Ports).
func lowPorts(t *testing.T, n int) []int {
	t.Helper()
	return testcaddy.Ports(t, n)
}

// startCaddy loads the Caddyfile (site blocks only; the global options are
// added here) and stops Caddy when the test ends.
func startCaddy(t *testing.T, sites string) *testCaddy {
	t.Helper()
	return wrap(t, inproc.Start(t, sites))
}

// pushCaddy is startCaddy that also returns the @EXTRA@ port.
func pushCaddy(t *testing.T, sites string) (*testCaddy, int) {
	t.Helper()
	tc := startCaddy(t, sites)
	return tc, tc.ExtraPort
}

// Expand replaces the port markers in s.
func (tc *testCaddy) Expand(s string) string { return tc.c().Expand(s) }

// adapt turns the sites into Caddy JSON with the harness's global options.
func (tc *testCaddy) adapt(sites string) ([]byte, error) { return tc.c().Adapt(sites) }

// load loads the sites on the ports already in tc; for tests of what a
// failed load does (startCaddy fails the test on one).
func (tc *testCaddy) load(sites string) error {
	return tc.c().Load(sites)
}

// Reload posts a new config to the admin API's /load, the way `caddy reload`
// does, and fails the test if Caddy refuses it.
func (tc *testCaddy) Reload(sites string) {
	tc.t.Helper()
	tc.c().Reload(sites)
}

// Admin performs a request against the admin API and returns status and body.
func (tc *testCaddy) Admin(method, path string, body io.Reader) (int, []byte) {
	tc.t.Helper()
	return tc.c().Admin(method, path, body)
}

// URL returns http://localhost:<HTTPPort><path>.
func (tc *testCaddy) URL(path string) string { return tc.c().URL(path) }

// WSURL returns ws://localhost:<HTTPPort><path>.
func (tc *testCaddy) WSURL(path string) string { return tc.c().WSURL(path) }
