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
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// caddyBin is the Caddy built once for the whole suite.
var caddyBin string

// repoRoot is the repository root (two levels above e2e).
var repoRoot string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	dir, err := os.MkdirTemp("", "caddyws-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	caddyBin = filepath.Join(dir, "caddy")
	// Race-built under `go test -race` (the race build cache is shared with
	// the interop tests): a race in our handlers under real clients shows up
	// in Caddy's log, and caddyProc.stop fails the test.
	args := []string{"build", "-o", caddyBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/caddy")...)
	cmd.Dir = repoRoot
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building cmd/caddy: %v\n%s", err, out.String())
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built cmd/caddy (race=%v) in %s\n", raceEnabled, time.Since(start).Round(time.Second))
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
