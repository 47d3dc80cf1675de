// Package interop runs the same WebSocket test cases against our
// websocket_tunnel (the cmd/caddy binary, built once and run as a real
// process) and against Debian's websockify as a reference peer, with two
// clients: gorilla/websocket and Node's `ws` from npm, which none of us
// wrote. Same bytes in, same bytes out, on both peers.
//
// Needs websockify (apt-get install websockify) and node with npm; each
// missing one skips its tests with a loud message. .ci/run installs both.
// CADDYWS_CADDY=/path/to/caddy uses a prebuilt binary instead of building.
package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	// caddyBin is the cmd/caddy binary under test, built by TestMain.
	caddyBin string
	// workDir holds the binary, configs and logs; removed after the tests.
	workDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "caddyws-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if caddyBin = os.Getenv("CADDYWS_CADDY"); caddyBin == "" {
		caddyBin = filepath.Join(workDir, "caddy")
		if err := buildCaddy(caddyBin); err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			return 1
		}
	}
	code := m.Run()
	if err := stopFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		code = 1
	}
	return code
}

// buildCaddy builds cmd/caddy; under -race the binary is race-enabled too,
// so the tunnel's own goroutines are checked while real clients use it.
func buildCaddy(out string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/caddy")
	cmd := exec.Command("go", args...)
	_, file, _, _ := runtime.Caller(0)
	cmd.Dir = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	start := time.Now()
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	fmt.Fprintf(os.Stderr, "interop: built cmd/caddy (race=%v) in %s\n", raceEnabled, time.Since(start).Round(time.Second))
	return nil
}
