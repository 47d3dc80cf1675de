// Package interop runs the same WebSocket test cases against our
// websocket_tunnel (the cmd/caddy binary, built once and run as a real
// process) and against Debian's websockify as a reference peer, with two
// clients: gorilla/websocket and Node's `ws` from npm, which none of us
// wrote. Same bytes in, same bytes out, on both peers. The exec upstream
// (a program per connection) is compared the same way with Debian's
// websocketd and gorilla/websocket's examples/command server, all three
// running testdata/lines.sh.
//
// Needs websockify and websocketd (apt-get install websockify websocketd)
// and node with npm; each missing one skips its tests with a loud message.
// .ci/run installs them.
// CADDYWS_CADDY=/path/to/caddy uses a prebuilt binary instead of building.
package interop

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/caddyws/caddyws/internal/testcaddy"
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
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "SKIPPED under -short: the interop tests need websockify, node and a Caddy build; run without -short")
		return 0
	}
	var err error
	workDir, err = os.MkdirTemp("", "caddyws-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	// testcaddy.Binary: race-built under -race, so the tunnel's own
	// goroutines are checked while real clients use it; $CADDYWS_CADDY
	// names a prebuilt binary instead.
	if caddyBin, err = testcaddy.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	code := m.Run()
	if err := stopFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		code = 1
	}
	return code
}
