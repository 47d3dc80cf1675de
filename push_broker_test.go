package caddyws

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
)

// downBroker is a test broker module whose Publish fails as an unreachable
// broker's does, and which answers "node" scope (it is not memory).
type downBroker struct{}

func (downBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "websocket_push.brokers.test_down", New: func() caddy.Module { return new(downBroker) }}
}

func (*downBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (downBroker) NewBroker(h broker.History, l *zap.Logger) (broker.Broker, error) {
	return &failingPublish{memory.New(h, l)}, nil
}

type failingPublish struct{ *memory.Broker }

func (f *failingPublish) Publish(ctx context.Context, s string, d []byte) (broker.Position, error) {
	if strings.Contains(string(d), `"down"`) {
		return broker.Position{}, fmt.Errorf("test broker: %w", broker.ErrUnavailable)
	}
	if strings.Contains(string(d), `"hang"`) {
		<-ctx.Done()
		return broker.Position{}, ctx.Err()
	}
	return f.Broker.Publish(ctx, s, d)
}

func init() { caddy.RegisterModule(downBroker{}) }

// TestPushBrokerTroubleAndBodyLimit: a broker that refuses a message gives
// 503 (not a hang, not a silent 200) while subscribers stay connected; a
// working publish through a non-memory broker says its count is this
// node's; an oversized body gives 413.
func TestPushBrokerTroubleAndBodyLimit(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub bt
		auth token_is_user
		broker test_down
	}
	websocket_push /push {
		hub bt
		publish_key k
		max_body_size 1KiB
	}
}`)
	c := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, c, `{"token":"a","event":"e"}`)
	expectType(t, c, "connected")

	st, body := postPush(t, tc.URL("/push"), "k", `{"userId":"a","message":"down"}`)
	if st != http.StatusServiceUnavailable || !strings.Contains(body, "error") {
		t.Fatalf("broker down: %d %s", st, body)
	}
	st, body = postPush(t, tc.URL("/push"), "k", `{"userId":"a","message":"fine"}`)
	if st != 200 || !strings.Contains(body, `"delivered":1`) || !strings.Contains(body, `"scope":"node"`) {
		t.Fatalf("publish through a node-scoped broker: %d %s", st, body)
	}
	if f := expectType(t, c, "message"); string(f.Message) != `"fine"` {
		t.Fatalf("%+v", f)
	}
	st, _ = postPush(t, tc.URL("/push"), "k", `{"userId":"a","message":"`+strings.Repeat("x", 2000)+`"}`)
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", st)
	}
	if testing.Short() {
		return
	}
	start := time.Now()
	st, _ = postPush(t, tc.URL("/push"), "k", `{"userId":"a","message":"hang"}`)
	if st != http.StatusServiceUnavailable || time.Since(start) > 12*time.Second {
		t.Fatalf("hanging broker: %d after %v", st, time.Since(start))
	}
	expectSilence(t, c, 50*time.Millisecond) // still connected, nothing stray
}
