// Package cluster runs websocket_push as users deploy it across nodes: two
// Caddy processes built from cmd/caddy with examples/cluster/node1 and node2
// (only their ports changed to free ones), one broker — a real NATS server
// with JetStream embedded in this test process, or a real redis-server —
// and real WebSocket subscribers and HTTP publishers.
//
// Needs redis-server on PATH for the Redis half (CI installs it); without
// it those tests skip loudly.
package cluster

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker/brokertest"
	"github.com/caddyws/caddyws/internal/testcaddy"
)

var repoRoot = testcaddy.RepoRoot

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run builds cmd/caddy once (shared with the other packages through
// testcaddy's cache) before the tests.
func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "SKIPPED under -short: the cluster tests need redis-server and a Caddy build; run without -short")
		return 0
	}
	if _, err := testcaddy.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	return m.Run()
}

const pushKey = "cluster-test-key"

func freePort(t *testing.T) int { return brokertest.FreePort(t) }

// node is one Caddy process.
type node struct {
	name string
	port int
	proc *testcaddy.Process
}

func (n *node) url(path string) string   { return fmt.Sprintf("http://127.0.0.1:%d%s", n.port, path) }
func (n *node) wsURL(path string) string { return fmt.Sprintf("ws://127.0.0.1:%d%s", n.port, path) }

// startNode runs examples/cluster/<file> with its ports replaced.
func startNode(t *testing.T, file string, brokerType, brokerURL string) *node {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "examples", "cluster", file))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: strings.TrimSuffix(file, ".Caddyfile"), port: freePort(t)}
	cfg := string(src)
	for _, p := range []string{":8081 {", ":8082 {"} {
		cfg = strings.Replace(cfg, p, fmt.Sprintf(":%d {", n.port), 1)
	}
	for _, a := range []string{"localhost:2019", "localhost:2020"} {
		cfg = strings.Replace(cfg, a, fmt.Sprintf("localhost:%d", freePort(t)), 1)
	}
	if cfg == string(src) {
		t.Fatalf("%s: ports not found in the example", file)
	}
	n.proc, err = testcaddy.RunProcess(t, cfg, testcaddy.ProcessOptions{
		Env: []string{"PUSH_KEY=" + pushKey, "PUSH_BROKER=" + brokerURL, "PUSH_BROKER_TYPE=" + brokerType},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s log ----\n%s", n.name, testcaddy.Tail(n.proc.Log(), 6000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(n.url("/push"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusMethodNotAllowed {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up in 20s (last: %v)\n%s", n.name, err, n.proc.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publish POSTs body to the node's /push and returns status and body.
func publish(t *testing.T, n *node, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.url("/push"), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+pushKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", n.url("/push"), err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func mustPublish(t *testing.T, n *node, body string) string {
	t.Helper()
	code, resp := publish(t, n, body)
	if code != http.StatusOK {
		t.Fatalf("publish %s on %s: %d %s", body, n.name, code, resp)
	}
	return resp
}
