package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPushBrowserRecoversEveryMessageOnce: a page in Chromium subscribes with
// client/caddyws-push.js over wss:// (token fetched from the app); a POST
// from a backend is rendered; the operator drops the connection (4004) and
// messages are published while the page is disconnected; the client
// reconnects on its own and the page shows every message exactly once, in
// order.
func TestPushBrowserRecoversEveryMessageOnce(t *testing.T) {
	b := newBrowser(t)
	cp := startPush(t)
	if err := b.run(30*time.Second, navigate(cp.URL("/"))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	const describe = `JSON.stringify({status: document.getElementById('status').textContent, state: window.state,
		feed: Array.from(document.querySelectorAll('#feed li'), li => li.textContent)})`
	b.poll(15*time.Second, `window.state && state.lifecycle.length === 1 && state.lifecycle[0][0] === 'connected'`, describe)

	feedIs := func(want ...string) string {
		q := make([]string, len(want))
		for i, w := range want {
			q[i] = fmt.Sprintf("%q", w)
		}
		return fmt.Sprintf(`JSON.stringify(Array.from(document.querySelectorAll('#feed li'), li => li.textContent)) === JSON.stringify([%s])`, strings.Join(q, ","))
	}

	publish(t, cp, `{"userId":"alice","event":"news","message":"b1"}`)
	b.poll(10*time.Second, feedIs("b1"), describe)

	drop(t, cp, "alice")
	b.poll(10*time.Second, `state.lifecycle.length === 2 && state.lifecycle[1][0] === 'disconnected' && state.lifecycle[1][1] === 4004 && state.lifecycle[1][2] === true`, describe)
	for _, m := range []string{"b2", "b3", "b4"} {
		publish(t, cp, fmt.Sprintf(`{"userId":"alice","event":"news","message":%q}`, m))
	}
	// The messages must have been published while the page was disconnected,
	// or this test would not be testing recovery.
	if n, err := eval[int](b, 5*time.Second, `state.lifecycle.length`); err != nil || n != 2 {
		t.Fatalf("the page reconnected before the gap's messages were published (lifecycle length %d, %v): the test did not test recovery", n, err)
	}
	b.poll(15*time.Second, feedIs("b1", "b2", "b3", "b4"), describe)
	publish(t, cp, `{"userId":"alice","event":"news","message":"b5"}`)
	b.poll(10*time.Second, feedIs("b1", "b2", "b3", "b4", "b5"), describe)
	time.Sleep(500 * time.Millisecond) // would a duplicate still arrive?
	b.poll(time.Second, feedIs("b1", "b2", "b3", "b4", "b5"), describe)

	lifecycle, err := eval[string](b, 5*time.Second, `JSON.stringify(state.lifecycle)`)
	if err != nil {
		t.Fatal(err)
	}
	// connected comes first: the server answers the connect frame, then
	// reports the recovery, then replays.
	want := `[["connected","alice"],["disconnected",4004,true],["connected","alice"],["recovered","user:alice"]]`
	if lifecycle != want {
		t.Fatalf("lifecycle %s, want %s", lifecycle, want)
	}
	b.screenshot("push-browser-recovered.png")
}
