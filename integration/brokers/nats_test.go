// Package brokers tests the brokers against real servers (an embedded
// nats-server), kept out of the module users import.
package brokers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/brokertest"
	caddynats "github.com/caddyws/caddyws/broker/nats"
	"github.com/caddyws/caddyws/integration/natstest"
)

// testServer is a real NATS server (natstest) that the tests stop and
// start again in place.
type testServer struct{ *natstest.Server }

func startServer(t *testing.T) *testServer { return &testServer{natstest.Start(t)} }

func (ts *testServer) start(t *testing.T) { ts.Server.Start(t) }
func (ts *testServer) stop()              { ts.Server.Stop() }
func (ts *testServer) url() string        { return ts.URL() }

func testConfig(ts *testServer) caddynats.Config {
	return caddynats.Config{URL: ts.url(), ReconnectWait: 100 * time.Millisecond, Timeout: time.Second}
}

func TestConformance(t *testing.T) {
	ts := startServer(t)
	brokertest.Run(t, brokertest.Backend{
		New: func(t *testing.T, h broker.History, handler broker.Handler) broker.Broker {
			return startBroker(t, testConfig(ts), h, handler)
		},
		Shared: true,
		Addr:   func() string { return fmt.Sprintf("127.0.0.1:%d", ts.Port) },
		NewAt: func(t *testing.T, addr string, h broker.History, handler broker.Handler) broker.Broker {
			cfg := testConfig(ts)
			cfg.URL = "nats://" + addr
			return startBroker(t, cfg, h, handler)
		},
		Stop:     func(t *testing.T) { ts.stop() },
		Start:    func(t *testing.T) { ts.start(t) },
		HasState: func(t *testing.T, _ broker.Broker, stream string) bool { return storedFor(t, ts, stream) },
		LoseHistory: func(t *testing.T) {
			nc, err := gonats.Connect(ts.url())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := js.DeleteStream(ctx, caddynats.DefaultStream); err != nil {
				t.Fatalf("deleting the jetstream stream: %v", err)
			}
		},
	})
}

// storedFor reports whether JetStream keeps anything for stream (the
// JetStream stream itself is shared by every push stream, so its existence
// alone is not state for one).
func storedFor(t *testing.T, ts *testServer, stream string) bool {
	t.Helper()
	nc, err := gonats.Connect(ts.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, caddynats.DefaultStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.GetLastMsgForSubject(ctx, caddynats.DefaultPrefix+".s."+broker.EncodeName(stream))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func startBroker(t *testing.T, cfg caddynats.Config, h broker.History, handler broker.Handler) broker.Broker {
	b, err := caddynats.New(cfg, h, zaptest.NewLogger(t))
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

// TestCloseLeavesNoGoroutines: a broker that connected, subscribed,
// published and read history leaves nothing running after Close (the
// embedded server's per-client goroutines end with the connection too).
func TestCloseLeavesNoGoroutines(t *testing.T) {
	ts := startServer(t)
	warm := startBroker(t, testConfig(ts), broker.History{Size: 10}, func(broker.Message) {})
	_ = warm.Close()
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		b := startBroker(t, testConfig(ts), broker.History{Size: 10}, func(broker.Message) {})
		for _, s := range []string{"a", "b", "c"} {
			if err := b.Subscribe(s); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Publish(context.Background(), s, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := b.Since(context.Background(), "a", broker.Position{}, 0); err == nil {
			t.Fatal("Since from the zero position must not claim recovery")
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

// TestStartsWhileNATSIsDown: a node must start with its broker down, answer
// publishes with ErrUnavailable quickly, and work once NATS is up, with the
// JetStream stream created then.
func TestStartsWhileNATSIsDown(t *testing.T) {
	ts := startServer(t)
	ts.stop()
	got := make(chan broker.Message, 10)
	start := time.Now()
	b := startBroker(t, testConfig(ts), broker.History{Size: 10}, func(m broker.Message) { got <- m })
	defer b.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Start took %v with NATS down", took)
	}
	if _, err := b.Publish(context.Background(), "s", []byte("x")); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish with NATS down: %v", err)
	}
	if err := b.Subscribe("s"); err != nil {
		t.Fatal(err)
	}
	ts.start(t)
	other := startBroker(t, testConfig(ts), broker.History{Size: 10}, func(broker.Message) {})
	defer other.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := other.Publish(context.Background(), "s", []byte("hello")); err == nil {
			select {
			case m := <-got:
				if string(m.Data) != "hello" || m.Position.Epoch == "" {
					t.Fatalf("got %q at %+v", m.Data, m.Position)
				}
				if _, err := b.Publish(context.Background(), "s", []byte("x")); err != nil {
					t.Fatalf("publish once NATS is up: %v", err)
				}
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker that started without NATS never received")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
