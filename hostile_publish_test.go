package caddyws

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
)

// Hostile publishes: what one POST can make Caddy hold.

// heapInuse is the live heap of this process (the in-process Caddy
// included) after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// userIDs returns `"u0","u1",...` for a userIds list.
func userIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprintf("u%d", i))
	}
	return strings.Join(ids, ",")
}

// TestPublishToManyUsersCostsItsBodyOnce: a 512 KiB message to 2000 users
// with history on is encoded once and kept once, so the heap grows by less
// than three times the body (plus a small constant for 2000 streams), not
// by a copy per user; a subscribed user still gets it.
func TestPublishToManyUsersCostsItsBodyOnce(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub manyusers
		auth token_is_user
		history 10
	}
	websocket_push /push {
		hub manyusers
		publish_key k
		max_publish_targets 2000
		history 10
	}
}`)
	c := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, c, `{"token":"u7"}`)
	expectType(t, c, "connected")

	const size = 512 << 10
	body := `{"userIds":[` + userIDs(2000) + `],"message":"` + strings.Repeat("x", size) + `"}`
	before := heapInuse()
	if st, b := postPush(t, tc.URL("/push"), "k", body); st != http.StatusOK {
		t.Fatalf("publish: %d %.200s", st, b)
	}
	if f := expectType(t, c, "message"); len(f.Message) != size+2 {
		t.Fatalf("the subscribed user got a message of %d bytes", len(f.Message))
	}
	grew := int64(heapInuse()) - int64(before)
	limit := int64(3*size + 4<<20)
	t.Logf("heap grew %d KiB for a %d KiB body to 2000 users (limit %d KiB)", grew>>10, size>>10, limit>>10)
	if grew > limit {
		t.Fatalf("heap grew %d MiB for one %d KiB publish to 2000 users: want under %d MiB", grew>>20, size>>10, limit>>20)
	}
	runtime.KeepAlive(body)
}

// TestPublishOverTargetLimitIs413: more distinct userIds than
// max_publish_targets is refused with 413 and a JSON error, before anything
// is published; duplicates do not count, and the default is 1000.
func TestPublishOverTargetLimitIs413(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /small {
		hub targets
		publish_key k
		max_publish_targets 3
	}
	websocket_push /default {
		hub targets
		publish_key k
	}
}`)
	for _, tt := range []struct {
		name, path, body string
		want             int
	}{
		{"at the limit", "/small", `{"userIds":["a","b","c"],"message":1}`, http.StatusOK},
		{"duplicates count once", "/small", `{"userIds":["a","b","c","a","b"],"message":1}`, http.StatusOK},
		{"one over", "/small", `{"userIds":["a","b","c","d"],"message":1}`, http.StatusRequestEntityTooLarge},
		{"default allows 1000", "/default", `{"userIds":[` + userIDs(1000) + `],"message":1}`, http.StatusOK},
		{"default refuses 1001", "/default", `{"userIds":[` + userIDs(1001) + `],"message":1}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, b := postPush(t, tc.URL(tt.path), "k", tt.body)
			if st != tt.want {
				t.Fatalf("status %d (%s), want %d", st, b, tt.want)
			}
			if st != http.StatusOK && !strings.Contains(b, `"error":"too many publish targets`) {
				t.Fatalf("body %s: want a JSON error naming the limit", b)
			}
		})
	}
}

// lostReplyBroker is a test broker module that behaves like a real broker
// whose reply was lost: a message containing "lostreply" is stored, comes
// back to this node through the subscription (as redis and nats hand back
// a message whose publish outcome was unknown), and Publish says
// ErrMaybeStored.
type lostReplyBroker struct{}

func (lostReplyBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "websocket_push.brokers.test_lost_reply", New: func() caddy.Module { return new(lostReplyBroker) }}
}

func (*lostReplyBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (lostReplyBroker) NewBroker(h broker.History, l *zap.Logger) (broker.Broker, error) {
	return &lostReply{Broker: memory.New(h, l)}, nil
}

type lostReply struct {
	*memory.Broker
	handler broker.Handler
}

func (b *lostReply) Start(ctx context.Context, h broker.Handler) error {
	b.handler = h
	return b.Broker.Start(ctx, h)
}

func (b *lostReply) Publish(ctx context.Context, s string, d []byte) (broker.Position, error) {
	pos, err := b.Broker.Publish(ctx, s, d)
	if err != nil || !strings.Contains(string(d), "lostreply") {
		return pos, err
	}
	go b.handler(broker.Message{Stream: s, Position: pos, Data: d})
	return broker.Position{}, fmt.Errorf("test broker: reply lost: %w", broker.ErrMaybeStored)
}

func init() { caddy.RegisterModule(lostReplyBroker{}) }

// TestPublishWithLostReplyDeliversOnceAndRetryDoesNotDuplicate: when the
// broker stored a message but its reply was lost, the publisher gets 503
// with "maybe_stored": true and the message id, local subscribers still get
// the message exactly once (through the broker), and the publisher's retry
// with that id is answered as a duplicate instead of delivering it again.
func TestPublishWithLostReplyDeliversOnceAndRetryDoesNotDuplicate(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub lostreply
		auth token_is_user
		history 10
		broker test_lost_reply
	}
	websocket_push /push {
		hub lostreply
		publish_key k
	}
}`)
	c := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, c, `{"token":"a","event":"e"}`)
	expectType(t, c, "connected")

	for _, tt := range []struct{ name, first, retry string }{
		{"publisher id", `{"id":"order-42","userId":"a","message":"lostreply-1"}`, `{"id":"order-42","userId":"a","message":"lostreply-1"}`},
		{"server id given back", `{"userId":"a","message":"lostreply-2"}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, b := postPush(t, tc.URL("/push"), "k", tt.first)
			var r struct {
				Error       string
				ID          string
				MaybeStored bool `json:"maybe_stored"`
			}
			_ = json.Unmarshal([]byte(b), &r)
			if st != http.StatusServiceUnavailable || !r.MaybeStored || r.ID == "" || r.Error == "" {
				t.Fatalf("lost reply: %d %s, want 503 with maybe_stored true and the id", st, b)
			}
			f := expectType(t, c, "message")
			if f.ID != r.ID {
				t.Fatalf("delivered id %q, want %q", f.ID, r.ID)
			}
			retry := tt.retry
			if retry == "" {
				retry = `{"id":` + strconv.Quote(r.ID) + `,"userId":"a","message":"lostreply-2"}`
			}
			st, b = postPush(t, tc.URL("/push"), "k", retry)
			if st != http.StatusOK || !strings.Contains(b, `"duplicates":1`) || !strings.Contains(b, `"delivered":0`) {
				t.Fatalf("retry: %d %s, want 200 with duplicates 1 and nothing delivered", st, b)
			}
			// The next frame is a fresh message, not a second copy.
			mustPublish(t, tc.URL("/push"), "k", `{"userId":"a","message":"after"}`)
			if f := expectType(t, c, "message"); string(f.Message) != `"after"` {
				t.Fatalf("after the retry the subscriber got %s (id %s), want the next message", f.Message, f.ID)
			}
		})
	}
}
