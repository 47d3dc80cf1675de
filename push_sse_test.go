package caddyws

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Server-Sent Events through Caddy: HTTP/2 with an idle stream, encode in
// front, refusals and operations.

// waitTLS waits for Caddy's internal CA to have issued the site's
// certificate (the first handshakes fail until then).
func waitTLS(t *testing.T, c *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS handshake with %s: %v", base, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tlsClient(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
	return &http.Client{Transport: tr}
}

// publishWith publishes through c (a client for the tls internal site) and
// fails the test unless the publish is accepted.
func publishWith(t *testing.T, c *http.Client, url, key, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("publishing %s: %v", body, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing %s: %d %s", body, resp.StatusCode, readAllString(resp.Body))
	}
}

// TestSSEIdleHTTP2StreamOutlivesTheWriteTimeout: a stream idle for twice
// write_timeout still receives. A write deadline left armed after the last
// write made Go's HTTP/2 server reset the stream when it passed.
func TestSSEIdleHTTP2StreamOutlivesTheWriteTimeout(t *testing.T) {
	tc, _ := pushCaddy(t, `https://localhost:@HTTPS@ {
	tls internal
	websocket_push /sub {
		hub h2idle
		auth token_is_user
		write_timeout 300ms
	}
	websocket_push /push {
		hub h2idle
		publish_key k
	}
}`)
	c := tlsClient(true)
	base := fmt.Sprintf("https://localhost:%d", tc.HTTPSPort)
	waitTLS(t, c, base)
	s := openSSE(t, c, base+"/sub?token=idle", nil)
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", s.resp.Proto)
	}
	sub := sseSub{s}
	expectFrame(t, sub, "connected")
	for i := range 3 {
		time.Sleep(700 * time.Millisecond) // > 2 x write_timeout with nothing written
		publishWith(t, c, base+"/push", "k", fmt.Sprintf(`{"userId":"idle","message":%d}`, i))
		expectMessage(t, sub, fmt.Sprint(i), "")
	}
}

// TestSSEThroughEncodeGzipArrivesEventByEvent: with encode in front, each
// event is flushed through the compressor as it is written, not at the end
// of a buffer.
func TestSSEThroughEncodeGzipArrivesEventByEvent(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	encode gzip zstd
	websocket_push /sub {
		hub gz
		auth token_is_user
	}
	websocket_push /push {
		hub gz
		publish_key k
	}
}`)
	h := http.Header{}
	h.Set("Accept-Encoding", "gzip")
	s := openSSE(t, nil, tc.URL("/sub?token=gz"), h)
	if ce := s.resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", ce)
	}
	sub := sseSub{s}
	expectFrame(t, sub, "connected")
	for i := range 5 {
		mustPublish(t, tc.URL("/push"), "k", fmt.Sprintf(`{"userId":"gz","message":"m%d"}`, i))
		f, err := sub.next(2 * time.Second)
		if err != nil || string(f.Message) != fmt.Sprintf(`"m%d"`, i) {
			t.Fatalf("event %d: %+v %v", i, f, err)
		}
	}
}

// TestSSERefusalsAreJSONBeforeAnyStreamByte covers what an EventSource
// cannot get past: every answer is an HTTP status with a JSON reason.
func TestSSERefusalsAreJSONBeforeAnyStreamByte(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /sub {
		hub refuse
		auth token_is_user
		history 10
	}
	websocket_push /ws-only {
		hub refuse
		auth token_is_user
		transports websocket
	}
	websocket_push /sse-only {
		hub refuse
		auth token_is_user
		transports sse
	}
}`)
	long := strings.Repeat("a~1~x.", 3000)
	for _, c := range []struct {
		name, path string
		hdr        map[string]string
		status     int
	}{
		{"no token", "/sub", nil, 401},
		{"empty cookie", "/sub", map[string]string{"Cookie": "caddyws_token="}, 401},
		{"bad Last-Event-ID", "/sub?token=a", map[string]string{"Last-Event-ID": "a~x~y"}, 400},
		{"huge Last-Event-ID", "/sub?token=a", map[string]string{"Last-Event-ID": long}, 400},
		{"bad last_event_id", "/sub?token=a&last_event_id=zz", nil, 400},
		{"empty event", "/sub?token=a&event=", nil, 400},
		{"sse disabled", "/ws-only?token=a", nil, 406},
		{"foreign origin", "/sub?token=a", map[string]string{"Origin": "https://evil.example"}, 403},
	} {
		h := http.Header{}
		for k, v := range c.hdr {
			h.Set(k, v)
		}
		s, status, body := trySSE(t, nil, tc.URL(c.path), h, false)
		if s != nil || status != c.status {
			t.Errorf("%s: %v %d %s, want %d", c.name, s != nil, status, body, c.status)
			continue
		}
		decodeJSONBody(t, body)
	}
	if _, resp, err := pushDialer.Dial(tc.WSURL("/sse-only?token=a"), nil); err == nil || resp == nil || resp.StatusCode != 400 {
		t.Errorf("websocket on an sse-only route: %v %v", resp, err)
	}
	// A Last-Event-ID naming streams this connection does not follow, or of
	// another epoch, is accepted: the gap is reported, not refused.
	h := http.Header{}
	h.Set("Last-Event-ID", "a~5~otherepoch")
	s := openSSE(t, nil, tc.URL("/sub?token=a"), h)
	sub := sseSub{s}
	expectFrame(t, sub, "connected")
	if f := expectFrame(t, sub, "recovered"); f.Recovered || f.Stream != "all" {
		t.Fatalf("recovered %+v, want all not recovered", f)
	}
}

// TestSSEOperationsCountAndDropStreams: stats and presence count SSE
// streams by transport, the metrics gauge carries the label, and the
// admin drop ends a stream with a 4004 close event.
func TestSSEOperationsCountAndDropStreams(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /sub {
		hub ops-sse
		auth token_is_user
	}
}`)
	s := sseSub{openSSE(t, nil, tc.URL("/sub?token=ann&event=news"), nil)}
	expectFrame(t, s, "connected")
	w := dialPush(t, tc.WSURL("/sub"), nil)
	sendJSON(t, w, `{"type":"connect","token":"ann"}`)
	expectType(t, w, "connected")

	_, body := tc.Admin("GET", "/websocket_push/stats?hub=ops-sse", nil)
	if !strings.Contains(string(body), `"transports":{"sse":1,"websocket":1}`) {
		t.Fatalf("stats: %s", body)
	}
	_, body = tc.Admin("GET", "/websocket_push/presence?user=ann", nil)
	if !strings.Contains(string(body), `"connections":2`) || !strings.Contains(string(body), `"sse":1`) {
		t.Fatalf("presence: %s", body)
	}
	_, body = tc.Admin("GET", "/metrics", nil)
	if !strings.Contains(string(body), `caddyws_push_connections{hub="ops-sse",transport="sse"} 1`) {
		t.Fatalf("metrics lack the sse gauge")
	}
	st, body := tc.Admin("POST", "/websocket_push/drop", strings.NewReader(`{"user":"ann","event":"news"}`))
	if st != 200 || !strings.Contains(string(body), `"dropped":1`) {
		t.Fatalf("drop: %d %s", st, body)
	}
	if f := expectFrame(t, s, "close"); f.Offset != 4004 {
		t.Fatalf("close %+v, want 4004", f)
	}
	if _, err := s.next(5 * time.Second); err == nil || !strings.Contains(err.Error(), "stream ended") {
		t.Fatalf("after the close event: %v, want the end of the stream", err)
	}
	_, body = tc.Admin("GET", "/metrics", nil)
	if !strings.Contains(string(body), `caddyws_push_dropped_total{hub="ops-sse",reason="admin",transport="sse"} 1`) {
		t.Fatalf("metrics lack the sse drop")
	}
}

// TestSSEThroughReverseProxyToASecondCaddy: a front Caddy proxies the
// subscribe route (flush_interval -1) to the Caddy holding the hub; events
// pass through one by one.
func TestSSEThroughReverseProxyToASecondCaddy(t *testing.T) {
	tc, back := pushCaddy(t, `http://:@EXTRA@ {
	websocket_push /sub {
		hub proxied
		auth token_is_user
	}
	websocket_push /push {
		hub proxied
		publish_key k
	}
}
http://localhost:@HTTP@ {
	reverse_proxy 127.0.0.1:@EXTRA@ {
		flush_interval -1
	}
}`)
	s := sseSub{openSSE(t, nil, tc.URL("/sub?token=px"), nil)}
	expectFrame(t, s, "connected")
	for i := range 5 {
		mustPublish(t, fmt.Sprintf("http://127.0.0.1:%d/push", back), "k", fmt.Sprintf(`{"userId":"px","message":%d}`, i))
		f, err := s.next(2 * time.Second)
		if err != nil || string(f.Message) != fmt.Sprint(i) {
			t.Fatalf("event %d through the proxy: %+v %v", i, f, err)
		}
	}
}
