package redis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/brokertest"
)

// testServer is a real redis-server on a loopback port, with an
// append-only file fsynced on every write so that a kill -9 and a restart
// keep the data, as a production Redis with AOF would.
type testServer struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func freePort(t *testing.T) int { return brokertest.FreePort(t) }

func startServer(t *testing.T) *testServer {
	t.Helper()
	if testing.Short() {
		t.Skipf("SKIPPED under -short: %s needs the outside program redis-server; run without -short", t.Name())
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("SKIPPING REDIS BROKER TESTS: redis-server is not on PATH (apt-get install redis-server); CI must install it")
	}
	ts := &testServer{port: freePort(t), dir: t.TempDir()}
	ts.start(t)
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(ts.port), "--bind", "127.0.0.1",
		"--dir", ts.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--logfile", filepath.Join(ts.dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	ts.cmd = cmd
	c := goredis.NewClient(&goredis.Options{Addr: ts.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(ts.dir, "redis.log"))
			t.Fatalf("redis-server not ready in 10s: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server (no clean shutdown: the outage is abrupt).
func (ts *testServer) stop() {
	if ts.cmd != nil {
		_ = ts.cmd.Process.Kill()
		_ = ts.cmd.Wait()
		ts.cmd = nil
	}
}

func (ts *testServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", ts.port) }

func TestConformance(t *testing.T) {
	ts := startServer(t)
	brokertest.Run(t, brokertest.Backend{
		New: func(t *testing.T, h broker.History, handler broker.Handler) broker.Broker {
			return startBroker(t, ts.addr(), h, handler)
		},
		Shared: true,
		Addr:   ts.addr,
		NewAt: func(t *testing.T, addr string, h broker.History, handler broker.Handler) broker.Broker {
			return startBroker(t, addr, h, handler)
		},
		Stop:  func(t *testing.T) { ts.stop() },
		Start: func(t *testing.T) { ts.start(t) },
		HasState: func(t *testing.T, b broker.Broker, stream string) bool {
			return countKeys(t, ts.addr(), b.(*Broker).keys(stream)...) > 0
		},
		LoseHistory: func(t *testing.T) {
			c := goredis.NewClient(&goredis.Options{Addr: ts.addr()})
			defer c.Close()
			if err := c.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func startBroker(t *testing.T, addr string, h broker.History, handler broker.Handler) broker.Broker {
	b, err := New(Config{URL: "redis://" + addr, ReconnectWait: 100 * time.Millisecond, Timeout: time.Second}, h, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx, handler); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCloseLeavesNoGoroutines: subscriber loop, subscription applier and
// connection pools all end with Close.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	ts := startServer(t)
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		b := startBroker(t, ts.addr(), broker.History{Size: 10}, func(broker.Message) {})
		for _, s := range []string{"a", "b", "c"} {
			if err := b.Subscribe(s); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Publish(context.Background(), s, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines %d > baseline %d after Close:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStartsWhileRedisIsDown: a node must start with its broker down,
// answer publishes with ErrUnavailable quickly, and work once Redis is up.
func TestStartsWhileRedisIsDown(t *testing.T) {
	ts := startServer(t)
	ts.stop()
	got := make(chan broker.Message, 10)
	start := time.Now()
	b := startBroker(t, ts.addr(), broker.History{Size: 10}, func(m broker.Message) { got <- m })
	defer b.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Start took %v with Redis down", took)
	}
	if _, err := b.Publish(context.Background(), "s", []byte("x")); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish with Redis down: %v", err)
	}
	if err := b.Subscribe("s"); err != nil {
		t.Fatal(err)
	}
	ts.start(t)
	other := startBroker(t, ts.addr(), broker.History{Size: 10}, func(broker.Message) {})
	defer other.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := other.Publish(context.Background(), "s", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if string(m.Data) != "hello" {
				t.Fatalf("got %q", m.Data)
			}
			if _, err := b.Publish(context.Background(), "s", []byte("x")); err != nil {
				t.Fatalf("publish once Redis is up: %v", err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker that started without Redis never received")
		}
	}
}

// countKeys returns how many of keys exist on the server at addr.
func countKeys(t *testing.T, addr string, keys ...string) int64 {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	n, err := c.Exists(context.Background(), keys...).Result()
	if err != nil {
		t.Fatalf("counting keys: %v", err)
	}
	return n
}

// TestEveryKeyExpires: whatever the history settings, every key the broker
// writes carries an expiry, so a stream that stops being published never
// holds Redis memory for good.
func TestEveryKeyExpires(t *testing.T) {
	ts := startServer(t)
	for _, h := range []broker.History{{Size: 10}, {Size: 10, TTL: time.Minute}} {
		b := startBroker(t, ts.addr(), h, func(broker.Message) {})
		s := fmt.Sprintf("user:ttl-%v", h.TTL)
		if _, err := b.Publish(context.Background(), s, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_, _, _ = b.Since(context.Background(), s, broker.Position{}, 0)
		_ = b.Close()
	}
	c := goredis.NewClient(&goredis.Options{Addr: ts.addr()})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 8 {
		t.Fatalf("keys %v, want 4 per stream", keys)
	}
	for _, k := range keys {
		ttl, err := c.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("key %q has no expiry (PTTL %v)", k, ttl)
		}
	}
}

// TestLostReplyStillReachesLocalSubscribers: the publish script ran (the
// message is stored and the other node gets it) but its reply was lost:
// Publish says ErrMaybeStored, and the publishing node's own Handler gets
// the message once, through its subscription, so its local subscribers do
// not miss what every other node delivered.
func TestLostReplyStillReachesLocalSubscribers(t *testing.T) {
	ts := startServer(t)
	proxy := brokertest.NewProxy(t, ts.addr())
	h := broker.History{Size: 10}
	mine := make(chan broker.Message, 10)
	theirs := make(chan broker.Message, 10)
	a := startBroker(t, proxy.Addr(), h, func(m broker.Message) { mine <- m })
	defer a.Close()
	b := startBroker(t, ts.addr(), h, func(m broker.Message) { theirs <- m })
	defer b.Close()
	const s = "user:lost"
	for _, n := range []broker.Broker{a, b} {
		if err := n.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	// Interest in effect on both nodes, and a's pool connection dialled
	// before replies start to vanish.
	deadline := time.Now().Add(10 * time.Second)
	for got := 0; got < 2; {
		if _, err := b.Publish(context.Background(), s, []byte("probe")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-mine:
			got++
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("node a never received the probes")
		}
	}
	if _, err := a.Publish(context.Background(), s, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	for m := range theirs {
		if string(m.Data) == "warm" {
			break
		}
	}
	drain(mine)

	proxy.LoseReplies()
	_, err := a.Publish(context.Background(), s, []byte("lost-reply"))
	if !errors.Is(err, broker.ErrMaybeStored) || !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish whose reply was lost: %v, want ErrMaybeStored (wrapping ErrUnavailable)", err)
	}
	for name, ch := range map[string]chan broker.Message{"publishing node": mine, "other node": theirs} {
		select {
		case m := <-ch:
			if string(m.Data) != "lost-reply" || m.Position.Offset == 0 {
				t.Fatalf("%s got %q at %+v", name, m.Data, m.Position)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the %s never got the stored message", name)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if len(mine) != 0 {
		t.Fatalf("the publishing node got the message %d more times", len(mine))
	}
}

func drain(ch chan broker.Message) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
