package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestClientUnitTests runs the JS client's own unit tests (node --test
// client/), so `go test ./...` covers them too.
func TestClientUnitTests(t *testing.T) {
	need(t, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test",
		filepath.Join(repoRoot, "client", "caddyws-push.test.mjs"),
		filepath.Join(repoRoot, "client", "caddyws-push-sse.test.mjs"))
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test client/: %v\n%s", err, out)
	}
	t.Logf("node --test client/: %s", tail(string(out), 300))
}
