package caddyws

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestPushLimitsAndOrigins: frame size (1009), events per connection
// (4031), connections per user (4030), total connections (503), binary
// frames (1003), bad frames (4000); origins same-origin by default and an
// allow-list.
func TestPushLimitsAndOrigins(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub limits
		auth token_is_user
		max_frame_size 1KiB
		max_events 3
		max_connections 6
		max_connections_per_user 2
	}
	websocket_push /wide {
		hub wide
		auth token_is_user
		origins https://app.example.com https://*.example.org
	}
}`)
	conn := func(user string) *websocket.Conn {
		c := dialPush(t, tc.WSURL("/ws"), nil)
		sendJSON(t, c, `{"token":"`+user+`"}`)
		expectType(t, c, "connected")
		return c
	}
	big := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, big, `{"token":"a","event":"`+strings.Repeat("x", 2000)+`"}`)
	expectClose(t, big, 1009, 5*time.Second)

	tooMany := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, tooMany, `{"token":"a","events":["1","2","3","4"]}`)
	expectClose(t, tooMany, 4031, 5*time.Second)
	grow := conn("a")
	sendJSON(t, grow, `{"type":"subscribe","events":["1","2","3"]}`)
	expectType(t, grow, "subscribed")
	sendJSON(t, grow, `{"type":"subscribe","events":["4"]}`)
	expectClose(t, grow, 4031, 5*time.Second)

	bin := conn("b")
	_ = bin.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
	expectClose(t, bin, 1003, 5*time.Second)
	bad := conn("b")
	sendJSON(t, bad, `{"type":"dance"}`)
	expectClose(t, bad, 4000, 5*time.Second)

	// Per user: two are fine, the third is refused.
	u1, u2 := conn("u"), conn("u")
	third := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, third, `{"token":"u"}`)
	expectClose(t, third, 4030, 5*time.Second)

	// Total: 6 per hub (u1, u2 + 4 more); the next upgrade gets 503.
	waitStats(t, tc, "limits", 2)
	var extra []*websocket.Conn
	for i := 0; i < 4; i++ {
		extra = append(extra, conn(fmt.Sprint("v", i)))
	}
	_, resp, err := pushDialer.Dial(tc.WSURL("/ws"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over max_connections: %v %v", err, resp)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body["error"] == "" {
		t.Fatalf("503 without a JSON error")
	}
	// A slot frees when a connection ends.
	extra[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := pushDialer.Dial(tc.WSURL("/ws"), nil)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, _ = u1, u2

	// Origins.
	origin := func(path, o string) int {
		h := http.Header{}
		if o != "" {
			h.Set("Origin", o)
		}
		c, resp, err := pushDialer.Dial(tc.WSURL(path), h)
		if err == nil {
			c.Close()
			return 101
		}
		if resp == nil {
			t.Fatalf("origin %s: %v", o, err)
		}
		return resp.StatusCode
	}
	self := fmt.Sprintf("http://localhost:%d", tc.HTTPPort)
	for _, c := range []struct {
		path, origin string
		want         int
	}{
		{"/wide", "", 101},
		{"/wide", "https://app.example.com", 101},
		{"/wide", "https://x.example.org", 101},
		{"/wide", "https://evil.example.com", 403},
		{"/wide", self, 403},
	} {
		if got := origin(c.path, c.origin); got != c.want {
			t.Errorf("origin %q on %s: %d, want %d", c.origin, c.path, got, c.want)
		}
	}
	// Same origin by default (the /ws route is full: check on a fresh hub).
	tc.Reload(`http://localhost:@HTTP@ {
	websocket_push /ws {
		hub origins
		auth token_is_user
	}
}`)
	for _, c := range []struct {
		origin string
		want   int
	}{{self, 101}, {"http://evil.example", 403}, {"", 101}} {
		if got := origin("/ws", c.origin); got != c.want {
			t.Errorf("default origin %q: %d, want %d", c.origin, got, c.want)
		}
	}
}

// waitStats waits until the admin API reports n connections on hub.
func waitStats(t *testing.T, tc *testCaddy, hub string, n int) {
	t.Helper()
	waitStatsWithin(t, tc, hub, n, 5*time.Second)
}

// waitStatsWithin is waitStats with its own deadline.
func waitStatsWithin(t *testing.T, tc *testCaddy, hub string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, b := tc.Admin("GET", "/websocket_push/stats?hub="+hub, nil)
		var s []struct{ Connections int }
		if st == 200 && json.Unmarshal(b, &s) == nil && len(s) == 1 && s[0].Connections == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats for %s: %d %s, want %d connections", hub, st, b, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
