package redis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startServer(t *testing.T) *testServer {
	t.Helper()
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
