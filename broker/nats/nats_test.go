package nats

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/brokertest"
)

// testServer is a real NATS server with JetStream, embedded, on a fixed
// loopback port so that it can be stopped and started again in place.
type testServer struct {
	t    *testing.T
	port int
	dir  string
	srv  *server.Server
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
	ts := &testServer{t: t, port: freePort(t), dir: t.TempDir()}
	ts.start(t)
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start(t *testing.T) {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: ts.port, JetStream: true, StoreDir: ts.dir, NoLog: true, NoSigs: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	ts.srv = s
}

func (ts *testServer) stop() {
	if ts.srv != nil {
		ts.srv.Shutdown()
		ts.srv.WaitForShutdown()
		ts.srv = nil
	}
}

func (ts *testServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ts.port) }

func testConfig(ts *testServer) Config {
	return Config{URL: ts.url(), ReconnectWait: 100 * time.Millisecond, Timeout: time.Second}
}

func TestConformance(t *testing.T) {
	ts := startServer(t)
	brokertest.Run(t, brokertest.Backend{
		New: func(t *testing.T, h broker.History, handler broker.Handler) broker.Broker {
			return startBroker(t, testConfig(ts), h, handler)
		},
		Shared: true,
		Addr:   func() string { return fmt.Sprintf("127.0.0.1:%d", ts.port) },
		NewAt: func(t *testing.T, addr string, h broker.History, handler broker.Handler) broker.Broker {
			cfg := testConfig(ts)
			cfg.URL = "nats://" + addr
			return startBroker(t, cfg, h, handler)
		},
		Stop:  func(t *testing.T) { ts.stop() },
		Start: func(t *testing.T) { ts.start(t) },
		LoseHistory: func(t *testing.T) {
			nc, err := gonats.Connect(ts.url())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := js.DeleteStream(ctx, DefaultStream); err != nil {
				t.Fatalf("deleting the jetstream stream: %v", err)
			}
		},
	})
}

func startBroker(t *testing.T, cfg Config, h broker.History, handler broker.Handler) broker.Broker {
	b, err := New(cfg, h, zaptest.NewLogger(t))
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
