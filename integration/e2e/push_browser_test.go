package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const describePushPage = `JSON.stringify({status: document.getElementById('status').textContent, state: window.state,
	transport: window.push && push.transport,
	feed: Array.from(document.querySelectorAll('#feed li'), li => li.textContent)})`

// feedIs is a page expression: the feed shows exactly want, in order.
func feedIs(want ...string) string {
	q := make([]string, len(want))
	for i, w := range want {
		q[i] = fmt.Sprintf("%q", w)
	}
	return fmt.Sprintf(`JSON.stringify(Array.from(document.querySelectorAll('#feed li'), li => li.textContent)) === JSON.stringify([%s])`, strings.Join(q, ","))
}

// TestPushBrowserRecoversEveryMessageOnce: a page in Chromium subscribes with
// client/caddyws-push.js over wss:// (token fetched from the app); a POST
// from a backend is rendered; the operator drops the connection (4004) and
// messages are published while the page is disconnected; the client
// reconnects on its own and the page shows every message exactly once, in
// order.
func TestPushBrowserRecoversEveryMessageOnce(t *testing.T) {
	// connected comes first: the server answers the connect, then reports
	// the recovery of the stream in the connect frame's recover, then replays.
	browserRecovers(t, "/?transport=websocket", "websocket",
		`[["connected","alice"],["disconnected",4004,true],["connected","alice"],["recovered","user:alice"]]`)
}

// TestPushBrowserSSERecoversEveryMessageOnce: the same with Chromium's own
// EventSource (transport sse, over HTTP/2), authenticated by the HttpOnly
// token cookie the app set: the client reopens the stream after the close
// event (4004) with the last event id, and the server replays the gap.
func TestPushBrowserSSERecoversEveryMessageOnce(t *testing.T) {
	// The last event id holds every stream the connection follows: each is
	// reported recovered.
	browserRecovers(t, "/?transport=sse&auth=cookie", "sse",
		`[["connected","alice"],["disconnected",4004,true],["connected","alice"],["recovered","all"],["recovered","event:news"],["recovered","user:alice"]]`)
}

func browserRecovers(t *testing.T, page, transport, wantLifecycle string) {
	b := newBrowser(t)
	cp := startPush(t)
	if err := b.run(30*time.Second, navigate(cp.URL(page))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	b.poll(15*time.Second, `window.state && state.lifecycle.length === 1 && state.lifecycle[0][0] === 'connected'`, describePushPage)
	if got, err := eval[string](b, 5*time.Second, `push.transport`); err != nil || got != transport {
		t.Fatalf("the page connected over %q (%v), want %s", got, err, transport)
	}

	publish(t, cp, `{"userId":"alice","event":"news","message":"b1"}`)
	b.poll(10*time.Second, feedIs("b1"), describePushPage)

	drop(t, cp, "alice")
	b.poll(10*time.Second, `state.lifecycle.length === 2 && state.lifecycle[1][0] === 'disconnected' && state.lifecycle[1][1] === 4004 && state.lifecycle[1][2] === true`, describePushPage)
	for _, m := range []string{"b2", "b3", "b4"} {
		publish(t, cp, fmt.Sprintf(`{"userId":"alice","event":"news","message":%q}`, m))
	}
	// The messages must have been published while the page was disconnected,
	// or this test would not be testing recovery.
	if n, err := eval[int](b, 5*time.Second, `state.lifecycle.length`); err != nil || n != 2 {
		t.Fatalf("the page reconnected before the gap's messages were published (lifecycle length %d, %v): the test did not test recovery", n, err)
	}
	b.poll(15*time.Second, feedIs("b1", "b2", "b3", "b4"), describePushPage)
	publish(t, cp, `{"userId":"alice","event":"news","message":"b5"}`)
	b.poll(10*time.Second, feedIs("b1", "b2", "b3", "b4", "b5"), describePushPage)
	time.Sleep(500 * time.Millisecond) // would a duplicate still arrive?
	b.poll(time.Second, feedIs("b1", "b2", "b3", "b4", "b5"), describePushPage)

	lifecycle, err := eval[string](b, 5*time.Second, `JSON.stringify(state.lifecycle)`)
	if err != nil {
		t.Fatal(err)
	}
	if lifecycle != wantLifecycle {
		t.Fatalf("lifecycle %s, want %s", lifecycle, wantLifecycle)
	}
	if transport == "sse" {
		// The first stream has ended (the drop), so the browser has its
		// resource timing: SSE rides the site's HTTP/2.
		protos, err := eval[string](b, 5*time.Second, `JSON.stringify([...new Set(performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === '/ws').map(e => e.nextHopProtocol))])`)
		if err != nil || protos != `["h2"]` {
			t.Fatalf("the SSE streams went over %s (%v), want h2 only", protos, err)
		}
	}
	b.screenshot("push-browser-recovered-" + transport + ".png")
}

// TestPushBrowserFallsBackToSSEWhenUpgradesAreBlocked: in front of the hub,
// a route refuses every WebSocket upgrade (403), as a proxy that breaks
// WebSockets would. The page's client (transport auto) cannot open its
// WebSocket, says so with a fallback event, subscribes over Chromium's
// EventSource instead (token in the query) and receives what is published.
func TestPushBrowserFallsBackToSSEWhenUpgradesAreBlocked(t *testing.T) {
	b := newBrowser(t)
	cp := startPushSite(t, pushSiteBlockingUpgrades())
	if err := b.run(30*time.Second, navigate(cp.URL("/"))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	b.poll(20*time.Second, `window.state && state.lifecycle.length === 1 && state.lifecycle[0][0] === 'connected'`, describePushPage)
	got, err := eval[string](b, 5*time.Second, `JSON.stringify({transport: push.transport, fallbacks: state.fallbacks.map(f => [f.from, f.to, f.code])})`)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"transport":"sse","fallbacks":[["websocket","sse",1006]]}`; got != want {
		t.Fatalf("after the blocked upgrade: %s, want %s", got, want)
	}
	for i, m := range []string{"f1", "f2"} {
		publish(t, cp, fmt.Sprintf(`{"userId":"alice","event":"news","message":%q}`, m))
		b.poll(10*time.Second, feedIs([]string{"f1", "f2"}[:i+1]...), describePushPage)
	}
	b.screenshot("push-browser-fallback-sse.png")
}
