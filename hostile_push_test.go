package caddyws

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// writeQuiet writes a text frame and ignores errors: a flood goes on after
// the server closed the connection.
func writeQuiet(c *websocket.Conn, s string) {
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = c.WriteMessage(websocket.TextMessage, []byte(s))
}

const hostileSites = `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub hostile
		auth token_is_user
		queue_size 16
		history 500 10m
		auth_timeout 1s
		ping_interval 300ms
	}
	websocket_push /push {
		hub hostile
		publish_key s3cret
	}
}`

// floodSites is hostileSites with a short write_timeout, so that a
// connection that stops reading is removed quickly, and a long
// auth_timeout: on a loaded machine the first frame may take longer than
// a second to be read, and this test is not about it.
var floodSites = strings.NewReplacer(
	"ping_interval 300ms", "ping_interval 300ms\n\t\twrite_timeout 1s",
	"auth_timeout 1s", "auth_timeout 30s",
).Replace(hostileSites)

// TestPushRecoveryFloodIsBounded: a client that asks, again and again, to
// replay the whole broadcast history and never reads makes the server hold
// at most one page and its outbound budget (the replay waits for room, one
// request after the other), so the heap does not grow by the replays; once
// the writer has made no progress for write_timeout the connection is
// removed.
//
// How fast the server gets through the flood depends on the machine, so
// the heap is sampled for as long as the flood lasts (until the connection
// is removed), not at a fixed time after it began.
func TestPushRecoveryFloodIsBounded(t *testing.T) {
	tc, _ := pushCaddy(t, floodSites)
	// The epoch of the broadcast stream, from a subscriber that reads: one
	// that does not would be dropped as slow, its queue with it.
	watch := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, watch, `{"token":"watch"}`)
	expectType(t, watch, "connected")
	msg := `"` + strings.Repeat("x", 300) + `"`
	mustPublish(t, tc.URL("/push"), "s3cret", `{"broadcast":true,"message":`+msg+`}`)
	first := expectType(t, watch, "message")
	_ = watch.Close()
	for i := 1; i < 500; i++ {
		mustPublish(t, tc.URL("/push"), "s3cret", `{"broadcast":true,"message":`+msg+`}`)
	}
	waitStatsWithin(t, tc, "hostile", 0, 60*time.Second)

	flood := dialPush(t, tc.WSURL("/ws"), nil)
	if tcp, ok := flood.NetConn().(*net.TCPConn); ok {
		_ = tcp.SetReadBuffer(4096) // a small window: the server's writer stalls sooner
	}
	sendJSON(t, flood, `{"token":"flood"}`)
	expectType(t, flood, "connected")
	before := heapInuse()
	sub := fmt.Sprintf(`{"type":"subscribe","events":["e"],"recover":{"all":{"offset":0,"epoch":%q}}}`, first.Epoch)
	for i := 0; i < 300; i++ {
		writeQuiet(flood, sub)
	}
	// Once the socket buffers are full the writer makes no progress, and
	// write_timeout later the server removes the connection, while the
	// client still reads nothing (a reading client would be replayed all
	// 300 requests).
	var peak int64
	samples := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		if growth := int64(heapInuse()) - int64(before); growth > peak {
			peak = growth
		}
		samples++
		if hubConnections(tc, "hostile") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooding connection was not removed within 60s (heap growth up to %d KiB)", peak>>10)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("heap in use before %d KiB, growth at most %d KiB over %d samples", before>>10, peak>>10, samples)
	if peak > 8<<20 {
		t.Fatalf("heap grew by %d MiB during a recovery flood, want < 8 MiB", peak>>20)
	}
}

// hubConnections returns the hub's connection count from the admin API, or
// -1 when it cannot be read.
func hubConnections(tc *testCaddy, hub string) int {
	st, b := tc.Admin("GET", "/websocket_push/stats?hub="+hub, nil)
	var s []struct{ Connections int }
	if st != 200 || json.Unmarshal(b, &s) != nil || len(s) != 1 {
		return -1
	}
	return s[0].Connections
}

// TestPushPingFloodIsCoalesced: pings without reading cost one pending
// pong, not one per ping; the connection stays and gets its messages.
func TestPushPingFloodIsCoalesced(t *testing.T) {
	tc, _ := pushCaddy(t, hostileSites)
	c := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, c, `{"token":"pinger"}`)
	expectType(t, c, "connected")
	before := heapInuse()
	payload := strings.Repeat("p", 100)
	for i := 0; i < 300000; i++ {
		if err := c.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	after := heapInuse()
	growth := int64(after) - int64(before)
	t.Logf("heap in use before %d KiB, after %d KiB, growth %d KiB", before>>10, after>>10, growth>>10)
	if growth > 8<<20 {
		t.Fatalf("heap grew by %d MiB during a ping flood, want < 8 MiB", growth>>20)
	}
	mustPublish(t, tc.URL("/push"), "s3cret", `{"userId":"pinger","message":"still here"}`)
	m := expectType(t, c, "message")
	if string(m.Message) != `"still here"` {
		t.Fatalf("message %s", m.Message)
	}
}

// TestPushAuthTimeoutCannotBeDodged: before authentication neither the
// client's pings nor the server's keepalive extend auth_timeout; an
// authenticated client that pings stays.
func TestPushAuthTimeoutCannotBeDodged(t *testing.T) {
	tc, _ := pushCaddy(t, hostileSites)
	pingEvery := func(c *websocket.Conn, stop chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = c.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
			}
		}
	}
	for _, tt := range []struct {
		name string
		ping bool
	}{{"pinging", true}, {"only reading", false}} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPush(t, tc.WSURL("/ws"), nil)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if tt.ping {
				wg.Add(1)
				go pingEvery(c, stop, &wg)
			}
			expectClose(t, c, 4008, 2500*time.Millisecond)
			close(stop)
			wg.Wait()
		})
	}
	t.Run("authenticated client that pings stays", func(t *testing.T) {
		c := dialPush(t, tc.WSURL("/ws"), nil)
		sendJSON(t, c, `{"token":"ok"}`)
		expectType(t, c, "connected")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go pingEvery(c, stop, &wg)
		time.Sleep(2500 * time.Millisecond)
		mustPublish(t, tc.URL("/push"), "s3cret", `{"userId":"ok","message":1}`)
		expectType(t, c, "message")
		close(stop)
		wg.Wait()
	})
}

// TestPushJWTNullEventsIsRefused: a token whose events claim is null does
// not mean "any event" (only an absent claim does): it is refused with
// 4001, while the same token without the claim connects.
func TestPushJWTNullEventsIsRefused(t *testing.T) {
	secret := strings.Repeat("k", 32)
	tc, _ := pushCaddy(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push /ws {
		hub jwtnull
		auth jwt {
			key %s
		}
	}
}`, secret))
	sign := func(claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	for _, tt := range []struct {
		name   string
		claims jwt.MapClaims
		close  int // 0: connected
	}{
		{"absent claim: any event", jwt.MapClaims{"sub": "a", "exp": exp}, 0},
		{"null claim: refused", jwt.MapClaims{"sub": "a", "exp": exp, "events": nil}, 4001},
		{"list claim outside: forbidden", jwt.MapClaims{"sub": "a", "exp": exp, "events": []string{"x"}}, 4003},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPush(t, tc.WSURL("/ws"), nil)
			sendJSON(t, c, `{"token":"`+sign(tt.claims)+`","event":"secret"}`)
			if tt.close == 0 {
				expectType(t, c, "connected")
				return
			}
			expectClose(t, c, tt.close, 3*time.Second)
		})
	}
}
