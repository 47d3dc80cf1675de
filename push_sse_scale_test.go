package caddyws

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const sseScaleSites = `https://localhost:@HTTPS@ {
	tls internal
	websocket_push /sub {
		hub sse-scale
		auth token_is_user
		history 100
	}
	websocket_push /push {
		hub sse-scale
		publish_key k
	}
	respond /version "%s"
}`

// TestSSEThousandStreamsOverFourHTTP2ConnectionsSurviveAReload: 1000 SSE
// subscribers multiplexed over four HTTP/2 connections all receive every
// message in order, before and after a config reload, and none is dropped
// by the reload.
func TestSSEThousandStreamsOverFourHTTP2ConnectionsSurviveAReload(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 streams: not in -short")
	}
	tc, _ := pushCaddy(t, fmt.Sprintf(sseScaleSites, "one"))
	base := fmt.Sprintf("https://localhost:%d", tc.HTTPSPort)
	const conns, perConn = 4, 250
	clients := make([]*http.Client, conns)
	for i := range clients {
		clients[i] = tlsClient(true)
	}
	waitTLS(t, clients[0], base)
	subs := make([]sseSub, 0, conns*perConn)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perConn {
				s := openSSE(t, clients[i], fmt.Sprintf("%s/sub?token=u%d-%d&event=fan", base, i, j), nil)
				mu.Lock()
				subs = append(subs, sseSub{s})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, s := range subs {
		if s.s.resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s", s.s.resp.Proto)
		}
		expectFrame(t, s, "connected")
	}
	pub := func(from, to int) {
		for i := from; i < to; i++ {
			req, _ := http.NewRequest(http.MethodPost, base+"/push", strings.NewReader(fmt.Sprintf(`{"event":"fan","message":%d}`, i)))
			req.Header.Set("Authorization", "Bearer k")
			resp, err := clients[0].Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := readAllString(resp.Body)
			resp.Body.Close()
			if !strings.Contains(b, `"delivered":1000`) {
				t.Fatalf("publish %d: %s", i, b)
			}
		}
	}
	check := func(from, to int) {
		for k, s := range subs {
			for i := from; i < to; i++ {
				f, err := s.next(20 * time.Second)
				if err != nil || f.Type != "message" || string(f.Message) != fmt.Sprint(i) {
					t.Fatalf("stream %d, message %d: %+v %v", k, i, f, err)
				}
			}
		}
	}
	pub(0, 10)
	check(0, 10)

	tc.Reload(fmt.Sprintf(sseScaleSites, "two"))
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	waitVersion(t, clients[0], base+"/version", "two")
	pub(10, 20)
	check(10, 20)
}

const sseH1ReloadSites = `http://localhost:@HTTP@ {
	websocket_push /sub {
		hub sse-h1-reload
		auth token_is_user
	}
	websocket_push /push {
		hub sse-h1-reload
		publish_key k
	}
	respond /version "%s"
}`

// TestSSEHTTP1StreamsTakenOverSurviveAReload: SSE streams on HTTP/1.1,
// which the hub takes over from net/http, are not dropped by a config
// reload (Caddy's server shutdown does not see them), and go on receiving.
func TestSSEHTTP1StreamsTakenOverSurviveAReload(t *testing.T) {
	tc, _ := pushCaddy(t, fmt.Sprintf(sseH1ReloadSites, "one"))
	const n = 200
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	subs := make([]sseSub, n)
	for i := range subs {
		subs[i] = sseSub{openSSE(t, client, tc.URL(fmt.Sprintf("/sub?token=h1-%d", i)), nil)}
		if subs[i].s.resp.ProtoMajor != 1 {
			t.Fatalf("protocol %s", subs[i].s.resp.Proto)
		}
		expectFrame(t, subs[i], "connected")
	}
	pubAll := func(msg int) {
		for i := range subs {
			if got := mustPublish(t, tc.URL("/push"), "k", fmt.Sprintf(`{"userId":"h1-%d","message":%d}`, i, msg)); got != 1 {
				t.Fatalf("message %d to stream %d delivered to %d", msg, i, got)
			}
		}
		for i, s := range subs {
			f, err := s.next(10 * time.Second)
			if err != nil || f.Type != "message" || string(f.Message) != fmt.Sprint(msg) {
				t.Fatalf("stream %d, message %d: %+v %v", i, msg, f, err)
			}
		}
	}
	pubAll(1)
	tc.Reload(fmt.Sprintf(sseH1ReloadSites, "two"))
	waitVersion(t, http.DefaultClient, tc.URL("/version"), "two")
	pubAll(2)
}

// waitVersion waits until u answers want: the reload has applied.
func waitVersion(t *testing.T, c *http.Client, u, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(u)
		if err == nil {
			b := readAllString(resp.Body)
			resp.Body.Close()
			if b == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("reload did not apply: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSSEOverHTTP1TLSDeliversInOrder: on HTTPS with HTTP/1.1 nothing wraps
// the response here, so the hub takes the stream over and its writer
// goroutine writes it (TLS owns the records: no write without waiting),
// with per-stream ids from the history; every stream gets every message in
// order.
func TestSSEOverHTTP1TLSDeliversInOrder(t *testing.T) {
	tc, _ := pushCaddy(t, fmt.Sprintf(sseScaleSites, "one"))
	base := fmt.Sprintf("https://localhost:%d", tc.HTTPSPort)
	client := tlsClient(false)
	waitTLS(t, client, base)
	subs := make([]sseSub, 20)
	for i := range subs {
		s := openSSE(t, client, fmt.Sprintf("%s/sub?token=t%d&event=fan", base, i), nil)
		if s.resp.ProtoMajor != 1 || s.resp.TLS == nil {
			t.Fatalf("protocol %s, TLS %v", s.resp.Proto, s.resp.TLS != nil)
		}
		subs[i] = sseSub{s}
		expectFrame(t, subs[i], "connected")
	}
	for i := range 50 {
		publishWith(t, client, base+"/push", "k", fmt.Sprintf(`{"event":"fan","message":%d}`, i))
	}
	for k, s := range subs {
		for i := range 50 {
			f, err := s.next(10 * time.Second)
			if err != nil || f.Type != "message" || string(f.Message) != fmt.Sprint(i) {
				t.Fatalf("stream %d, message %d: %+v %v", k, i, f, err)
			}
		}
		if s.s.LastID() == "" {
			t.Fatalf("stream %d: no event id with history on", k)
		}
	}
}
