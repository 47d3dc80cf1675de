// Package e2e drives both directives with the clients our users run: noVNC and
// the push client in headless Chromium, Node's ws package, and a Go client,
// against Caddy built from cmd/caddy and run as a real process over HTTPS
// with its internal CA.
//
// Needs: chromium, novnc, xvfb, x11vnc, x11-xserver-utils (Debian) and
// `npm ci` in e2e/node. A missing browser skips the browser tests with a
// loud message; every other missing part fails, because CI installs it.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyws/caddyws/internal/testcaddy"
)

// repoRoot is the root of the caddyws module.
var repoRoot = testcaddy.RepoRoot

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds cmd/caddy before the tests (testcaddy.Binary: race-built under
// `go test -race`, so a race in our handlers under real clients shows up in
// Caddy's log and fails the test).
func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "SKIPPED under -short: the e2e tests need chromium, node, x11vnc, Xvfb, websockify and a Caddy build; run without -short")
		return 0
	}
	if _, err := testcaddy.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// artifactsDir is where screenshots go: $E2E_ARTIFACTS, or testdata/artifacts
// at the repository root (gitignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("E2E_ARTIFACTS")
	if d == "" {
		d = filepath.Join(repoRoot, "testdata", "artifacts")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("creating artifacts dir: %v", err)
	}
	return d
}

// need fails the test (it does not skip: CI installs these) when a program is missing.
func need(t *testing.T, progs ...string) {
	t.Helper()
	var missing []string
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing programs %s: install them (see .ci/run)", strings.Join(missing, ", "))
	}
}
