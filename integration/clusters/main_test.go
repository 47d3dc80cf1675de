// Package clusters runs websocket_push on clustered brokers as users deploy
// them: two Caddy processes built from cmd/caddy (subscribers on one,
// publishers on the other) over a Redis Cluster of 3 masters and 3
// replicas, a Redis Sentinel setup, or 3 NATS servers with clustered
// JetStream (embedded), and kills the server that holds the data.
//
// The Redis tests need redis-server and redis-cli on PATH; without them
// they skip loudly.
package clusters

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddyws/caddyws/broker/brokertest"
)

var caddyBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	dir, err := os.MkdirTemp("", "caddyws-clusters-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusters: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	caddyBin = filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "clusters: building cmd/caddy: %v\n%s", err, out.String())
		return 1
	}
	return m.Run()
}

const pushKey = "clusters-test-key"

func freePort(t *testing.T) int { return brokertest.FreePort(t) }

// nodeConfig is examples/cluster/node1.Caddyfile with the broker block
// given by the test.
const nodeConfig = `{
	admin localhost:%d
}
:%d {
	websocket_push /ws {
		hub cluster
		auth token_is_user
		history 1000 10m
		%s
	}
	websocket_push /push {
		hub cluster
		publish_key ` + pushKey + `
	}
}
`

type node struct {
	name string
	port int
	cmd  *exec.Cmd
	log  *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func (n *node) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", n.port, path) }

// startNode runs a Caddy process with brokerBlock; it must come up.
func startNode(t *testing.T, name, brokerBlock string) *node {
	t.Helper()
	n, err := runNode(t, name, brokerBlock)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runNode runs a Caddy process and returns an error if it exits or does
// not serve within 20s.
func runNode(t *testing.T, name, brokerBlock string) (*node, error) {
	t.Helper()
	n := &node{name: name, port: freePort(t), log: new(syncBuf)}
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	cfg := fmt.Sprintf(nodeConfig, freePort(t), n.port, brokerBlock)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	n.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("---- %s log ----\n%s", n.name, tail(n.log.String(), 5000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited:\n%s", name, n.log.String())
		default:
		}
		resp, err := http.Get(n.url("/push"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusMethodNotAllowed {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not come up in 20s (last: %v)\n%s", name, err, n.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// publish POSTs a message for user on n.
func publish(n *node, user, text string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := fmt.Sprintf(`{"userId":%q,"event":"news","message":%q}`, user, text)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.url("/push"), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+pushKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// subscriber is a WebSocket client recording the message texts it gets.
type subscriber struct {
	user   string
	conn   *websocket.Conn
	mu     sync.Mutex
	texts  map[string]bool
	closed error
}

func subscribe(t *testing.T, n *node, user string) *subscriber {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial(fmt.Sprintf("ws://127.0.0.1:%d/ws", n.port), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.WriteJSON(map[string]string{"token": user, "event": "news"}); err != nil {
		t.Fatal(err)
	}
	s := &subscriber{user: user, conn: c, texts: map[string]bool{}}
	go s.read()
	return s
}

func (s *subscriber) read() {
	for {
		_, b, err := s.conn.ReadMessage()
		var f struct {
			Type    string          `json:"type"`
			Message json.RawMessage `json:"message"`
		}
		s.mu.Lock()
		if err != nil {
			s.closed = err
			s.mu.Unlock()
			return
		}
		if json.Unmarshal(b, &f) == nil && f.Type == "message" {
			var text string
			_ = json.Unmarshal(f.Message, &text)
			s.texts[text] = true
		}
		s.mu.Unlock()
	}
}

func (s *subscriber) has(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.texts[text]
}

func (s *subscriber) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// waitAll waits until every subscriber has text(s).
func waitAll(t *testing.T, subs []*subscriber, d time.Duration, text func(*subscriber) string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var missing []string
		for _, s := range subs {
			if err := s.err(); err != nil {
				t.Fatalf("subscriber %s was disconnected: %v", s.user, err)
			}
			if !s.has(text(s)) {
				missing = append(missing, s.user)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d subscribers did not receive their message within %v: %v", len(missing), len(subs), d, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready publishes to each subscriber until it receives: interest crossing
// the broker takes a moment after a subscriber connects.
func ready(t *testing.T, pub *node, subs []*subscriber) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		all := true
		for _, s := range subs {
			if s.has(fmt.Sprint("probe-", s.user)) {
				continue
			}
			all = false
			_, _ = publish(pub, s.user, fmt.Sprint("probe-", s.user))
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("subscribers not reachable across nodes in 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
