package caddyws

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestSSELastEventIDOfTheMostEventsIsAccepted: with max_events at its
// ceiling (256), the id the server writes names every followed stream
// (broadcast, user, 256 events): an EventSource that reconnects with it
// must be accepted, not refused for naming too many streams.
func TestSSELastEventIDOfTheMostEventsIsAccepted(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /sub {
		hub manykeys
		auth token_is_user
		history 100
		max_events 256
	}
	websocket_push /push {
		hub manykeys
		publish_key k
	}
}`)
	var q []string
	for i := range 256 {
		q = append(q, fmt.Sprintf("event=e%d", i))
	}
	u := tc.URL("/sub?token=mk&" + strings.Join(q, "&"))
	s := openSSE(t, nil, u, nil)
	sub := sseSub{s}
	expectFrame(t, sub, "connected")
	mustPublish(t, tc.URL("/push"), "k", `{"userId":"mk","message":1}`)
	expectMessage(t, sub, "1", "")
	id := s.LastID()
	t.Logf("id of %d streams, %d bytes", strings.Count(id, ".")+1, len(id))
	h := http.Header{}
	h.Set("Last-Event-ID", id)
	if _, st, body := trySSE(t, nil, u, h, false); st != http.StatusOK {
		t.Fatalf("reconnecting with the server's own id: %d %s", st, body)
	}
}
