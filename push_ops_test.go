package caddyws

import (
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
)

const reloadSites = `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub live
		auth token_is_user
		ping_interval 2s
	}
	websocket_push /push {
		hub live
		publish_key k
	}
	respond /version "%s"
}`

// TestPushReloadKeepsSubscribers: 1000 live subscribers survive a reload
// with unchanged push settings (zero disconnects) and still receive; a
// reload that changes the hub settings closes the old hub's connections
// with 1001; once every client is gone the goroutine count is back to its
// baseline.
func TestPushReloadKeepsSubscribers(t *testing.T) {
	tc, _ := pushCaddy(t, fmt.Sprintf(reloadSites, "one"))
	// Warm up the HTTP client and server goroutines before the baseline.
	mustPublish(t, tc.URL("/push"), "k", `{"broadcast":true,"message":0}`)
	time.Sleep(100 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	subs := openSubs(t, tc.WSURL("/ws"), 1000, 100, func(i int) []string { return []string{fmt.Sprint("e", i%10)} })
	if n := mustPublish(t, tc.URL("/push"), "k", `{"broadcast":true,"message":1}`); n != 1000 {
		t.Fatalf("before reload: delivered %d", n)
	}
	tc.Reload(fmt.Sprintf(reloadSites, "two"))
	// Keep-alive connections to the old server are closed by the reload.
	pushHTTP.CloseIdleConnections()
	if st, b := getBody(t, tc.URL("/version")); st != 200 || b != "two" {
		t.Fatalf("reload did not apply: %d %q", st, b)
	}
	if n := mustPublish(t, tc.URL("/push"), "k", `{"broadcast":true,"message":2}`); n != 1000 {
		t.Fatalf("after reload: delivered %d, want 1000", n)
	}
	if n := mustPublish(t, tc.URL("/push"), "k", `{"event":"e3","message":3}`); n != 100 {
		t.Fatalf("after reload, event: delivered %d, want 100", n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, s := range subs {
		want := 2
		if i%10 == 3 {
			want = 3
		}
		for s.count() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		s.mu.Lock()
		got, err := fmt.Sprint(s.got), s.err
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("subscriber %d disconnected by the reload: %v", i, err)
		}
		if (want == 2 && got != "[1 2]") || (want == 3 && got != "[1 2 3]") {
			t.Fatalf("subscriber %d got %s", i, got)
		}
	}

	// Changed hub settings: a new hub; the old one's subscribers get 1001.
	tc.Reload(strings.Replace(fmt.Sprintf(reloadSites, "three"), "ping_interval 2s", "ping_interval 3s", 1))
	for i, s := range subs {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber %d still open after its hub was replaced", i)
		}
		var ce *websocket.CloseError
		if !asCloseError(s.err, &ce) || ce.Code != 1001 {
			t.Fatalf("subscriber %d ended with %v, want 1001", i, s.err)
		}
	}
	closeSubs(subs)
	waitGoroutines(t, baseline+5, 10*time.Second)
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	c, ok := err.(*websocket.CloseError)
	if ok {
		*ce = c
	}
	return ok
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := pushHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = fmt.Fprint(&sb, readAllString(resp.Body))
	return resp.StatusCode, sb.String()
}

// TestPushAdminMetricsAndKeepalive: stats, presence and drop through the
// admin API; metrics in Caddy's registry; dead peers removed in bounded
// time while live ones are kept by pings; Caddy's stop closes with 1001.
func TestPushAdminMetricsAndKeepalive(t *testing.T) {
	// The publish route is on another server (port): hub settings given on
	// one handler reach the hub the other shares.
	tc, pubPort := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub ops
		auth token_is_user
		ping_interval 500ms
		pong_timeout 500ms
	}
}
http://127.0.0.1:@EXTRA@ {
	websocket_push /publish {
		hub ops
		publish_key k
	}
}`)
	conn := func(user, events string) *websocket.Conn {
		c := dialPush(t, tc.WSURL("/ws"), nil)
		sendJSON(t, c, fmt.Sprintf(`{"type":"connect","token":%q,"events":[%s]}`, user, events))
		expectType(t, c, "connected")
		return c
	}
	a1 := conn("alice", `"news","sport"`)
	a2 := conn("alice", `"news"`)
	b := conn("bob", `"sport"`)

	st, body := tc.Admin("GET", "/websocket_push/stats?hub=ops", nil)
	var stats []struct {
		Connections int
		Users       map[string]int
		Events      map[string]int
	}
	if st != 200 || json.Unmarshal(body, &stats) != nil || len(stats) != 1 {
		t.Fatalf("stats: %d %s", st, body)
	}
	s := stats[0]
	if s.Connections != 3 || s.Users["alice"] != 2 || s.Users["bob"] != 1 || s.Events["news"] != 2 || s.Events["sport"] != 2 {
		t.Fatalf("stats: %s", body)
	}
	if st, _ := tc.Admin("GET", "/websocket_push/stats?hub=nope", nil); st != 404 {
		t.Fatalf("stats of an unknown hub: %d", st)
	}
	st, body = tc.Admin("GET", "/websocket_push/presence?user=alice", nil)
	if st != 200 || !strings.Contains(string(body), `"online":true`) || !strings.Contains(string(body), `"connections":2`) {
		t.Fatalf("presence: %d %s", st, body)
	}
	st, body = tc.Admin("GET", "/websocket_push/presence?user=zed", nil)
	if st != 200 || !strings.Contains(string(body), `"online":false`) {
		t.Fatalf("presence of an absent user: %d %s", st, body)
	}

	// The publish route is on another site and port: the hub is shared.
	pubURL := fmt.Sprintf("http://127.0.0.1:%d/publish", pubPort)
	if n := mustPublish(t, pubURL, "k", `{"userId":"alice","message":"x"}`); n != 2 {
		t.Fatalf("publish from the other site: delivered %d", n)
	}
	expectType(t, a1, "message")
	expectType(t, a2, "message")

	// Drop alice's connections on "sport" only, then all of bob's.
	st, body = tc.Admin("POST", "/websocket_push/drop", strings.NewReader(`{"user":"alice","event":"sport"}`))
	if st != 200 || !strings.Contains(string(body), `"dropped":1`) {
		t.Fatalf("drop: %d %s", st, body)
	}
	expectClose(t, a1, 4004, 5*time.Second)
	st, _ = tc.Admin("POST", "/websocket_push/drop", strings.NewReader(`{"user":"bob"}`))
	if st != 200 {
		t.Fatalf("drop bob: %d", st)
	}
	expectClose(t, b, 4004, 5*time.Second)
	if st, _ := tc.Admin("POST", "/websocket_push/drop", strings.NewReader(`{}`)); st != 400 {
		t.Fatalf("drop without user: %d", st)
	}

	// a2 keeps reading (answering pings) and must survive well past
	// ping_interval + pong_timeout; a peer that never reads (so never
	// answers a ping) must be removed.
	dead := conn("ghost", `"news"`)
	_ = dead
	done := make(chan error, 1)
	go func() {
		_ = a2.SetReadDeadline(time.Now().Add(4 * time.Second))
		_, _, err := a2.ReadMessage()
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = tc.Admin("GET", "/websocket_push/presence?user=ghost", nil)
		if strings.Contains(string(body), `"online":false`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead peer still present after 5s: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := <-done; err == nil || !isTimeout(err) {
		t.Fatalf("the live connection ended: %v", err)
	}

	// Metrics are in Caddy's registry.
	st, body = tc.Admin("GET", "/metrics", nil)
	for _, m := range []string{
		`caddyws_push_connections{hub="ops",transport="websocket"}`,
		`caddyws_push_published_total{hub="ops"}`,
		`caddyws_push_delivered_total{hub="ops"}`,
		`caddyws_push_dropped_total{hub="ops",reason="admin",transport="websocket"}`,
		`caddyws_push_dropped_total{hub="ops",reason="dead_peer",transport="websocket"}`,
		`caddyws_push_delivery_seconds_bucket{hub="ops"`,
	} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	// Caddy stopping closes every connection with 1001.
	last := conn("carol", `"x"`)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	expectClose(t, last, 1001, 10*time.Second)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
