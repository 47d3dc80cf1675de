package caddyws

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
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
