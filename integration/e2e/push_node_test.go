package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeDir holds the Node side of the interop tests (npm ci there first).
func nodeDir(t *testing.T) string {
	t.Helper()
	need(t, "node")
	d := filepath.Join(repoRoot, "integration", "e2e", "node")
	if _, err := os.Stat(filepath.Join(d, "node_modules", "ws")); err != nil {
		t.Fatalf("Node's ws package is not installed: run `npm ci` in %s (.ci/run does)", d)
	}
	return d
}

// TestPushNodeClients runs the push protocol from Node: by hand over the ws
// package (connect, subscribe, unsubscribe, receive, drop, recover), and
// through client/caddyws-push.js with ws as its WebSocket (automatic
// reconnect after 4004, a fresh token per connect, exactly-once delivery).
func TestPushNodeClients(t *testing.T) {
	dir := nodeDir(t)
	for _, mode := range []string{"protocol", "client"} {
		t.Run(mode, func(t *testing.T) {
			cp := startPush(t)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "push-interop.mjs", mode)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"PUSH_WS="+cp.WSURL("/ws"),
				"PUSH_URL="+cp.URL("/push"),
				"PUSH_KEY="+pushKey,
				fmt.Sprintf("ADMIN_URL=http://127.0.0.1:%d", cp.AdminPort),
				"CADDY_CA="+cp.RootCAFile(),
			)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node push-interop.mjs %s: %v\n%s", mode, err, out)
			}
			if !strings.Contains(string(out), `"ok":true`) {
				t.Fatalf("no success summary from node:\n%s", out)
			}
			t.Logf("node: %s", strings.TrimSpace(string(out)))
		})
	}
}
