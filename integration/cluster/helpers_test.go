package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddyws/caddyws/integration/natstest"

	"github.com/gorilla/websocket"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"
)

// brokerServer is a real broker server the nodes share; stop and start
// keep its data on disk, loseHistory wipes it.
type brokerServer interface {
	kind() string // the broker module name
	url() string
	stop()
	start(t *testing.T)
	loseHistory(t *testing.T)
}

type natsServer struct{ *natstest.Server }

func newNATS(t *testing.T) *natsServer { return &natsServer{natstest.Start(t)} }

func (s *natsServer) kind() string       { return "nats" }
func (s *natsServer) url() string        { return s.URL() }
func (s *natsServer) start(t *testing.T) { s.Server.Start(t) }
func (s *natsServer) stop()              { s.Server.Stop() }

func (s *natsServer) loseHistory(t *testing.T) {
	nc, err := gonats.Connect(s.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, "CADDYWS_PUSH"); err != nil {
		t.Fatalf("deleting the history stream: %v", err)
	}
}

type redisServer struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func newRedis(t *testing.T) *redisServer {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("SKIPPING REDIS CLUSTER TESTS: redis-server is not on PATH (apt-get install redis-server); CI must install it")
	}
	s := &redisServer{port: freePort(t), dir: t.TempDir()}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *redisServer) kind() string { return "redis" }
func (s *redisServer) url() string  { return fmt.Sprintf("redis://127.0.0.1:%d", s.port) }

func (s *redisServer) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command("redis-server", "--port", fmt.Sprint(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			t.Fatalf("redis-server not ready in 10s\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server abruptly (kill -9): the AOF keeps the data.
func (s *redisServer) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *redisServer) loseHistory(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port)})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// frame is any server frame.
type frame struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	Message   json.RawMessage `json:"message"`
	Stream    string          `json:"stream"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	User      string          `json:"user"`
	Code      string          `json:"code"`
	Reason    string          `json:"reason"`
}

func (f frame) text() string {
	var s string
	if json.Unmarshal(f.Message, &s) == nil {
		return s
	}
	return string(f.Message)
}

// subscriber is a WebSocket client that records every frame.
type subscriber struct {
	conn   *websocket.Conn
	mu     sync.Mutex
	frames []frame
	closed error // set when the connection ended
	wake   chan struct{}
}

func dial(t *testing.T, n *node, first any) *subscriber {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(n.wsURL("/ws"), nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", n.name, err, resp)
	}
	s := &subscriber{conn: c, wake: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.WriteJSON(first); err != nil {
		t.Fatal(err)
	}
	go s.read()
	if _, ok := s.waitFor(10*time.Second, func(f frame) bool { return f.Type == "connected" }); !ok {
		t.Fatalf("no connected frame from %s: %+v", n.name, s.messages())
	}
	return s
}

func (s *subscriber) read() {
	for {
		var f frame
		_, b, err := s.conn.ReadMessage()
		s.mu.Lock()
		if err != nil {
			s.closed = err
		} else if json.Unmarshal(b, &f) == nil {
			s.frames = append(s.frames, f)
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

func (s *subscriber) snapshot() ([]frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]frame(nil), s.frames...), s.closed
}

// waitFor waits for a frame matching pred.
func (s *subscriber) waitFor(d time.Duration, pred func(frame) bool) (frame, bool) {
	deadline := time.Now().Add(d)
	for {
		fs, closed := s.snapshot()
		for _, f := range fs {
			if pred(f) {
				return f, true
			}
		}
		if closed != nil || time.Now().After(deadline) {
			return frame{}, false
		}
		select {
		case <-s.wake:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *subscriber) messages() []frame {
	fs, _ := s.snapshot()
	var out []frame
	for _, f := range fs {
		if f.Type == "message" {
			out = append(out, f)
		}
	}
	return out
}

func hasText(text string) func(frame) bool {
	return func(f frame) bool { return f.Type == "message" && f.text() == text }
}

// probe publishes on pub until sub receives it: interest crossing the
// broker takes a moment after a subscriber connects.
func probe(t *testing.T, pub *node, sub *subscriber, body func(i int) string, text func(i int) string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		code, _ := publish(t, pub, body(i))
		if code == 200 {
			if _, ok := sub.waitFor(300*time.Millisecond, hasText(text(i))); ok {
				return
			}
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Fatalf("no probe crossed from %s in 20s", pub.name)
}
