package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// goSub is a push subscriber written with gorilla/websocket, the way a Go
// service would subscribe.
type goSub struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialPush(t *testing.T, cp *caddyProc, path string, hdr http.Header) *goSub {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: cp.TLSConfig(), HandshakeTimeout: 10 * time.Second, NetDialContext: loopbackDial}
	ws, resp, err := d.Dial(cp.WSURL(path), hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dialing %s: %v (HTTP %d)", path, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return &goSub{t: t, ws: ws}
}

func (s *goSub) send(v any) {
	s.t.Helper()
	if err := s.ws.WriteJSON(v); err != nil {
		s.t.Fatalf("sending %v: %v", v, err)
	}
}

// next reads one frame (bounded wait).
func (s *goSub) next() map[string]any {
	s.t.Helper()
	_ = s.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f map[string]any
	if err := s.ws.ReadJSON(&f); err != nil {
		s.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// expect reads one frame and checks its type.
func (s *goSub) expect(typ string) map[string]any {
	s.t.Helper()
	f := s.next()
	if f["type"] != typ {
		s.t.Fatalf("got frame %v, want type %q", f, typ)
	}
	return f
}

// closeCode waits for the server to close and returns the close code.
func (s *goSub) closeCode() int {
	s.t.Helper()
	_ = s.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := s.ws.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		s.t.Fatalf("waiting for a close frame: %v", err)
	}
}

// TestPushGoClient: a Go (gorilla) subscriber uses the classic first frame,
// receives, is dropped by the operator (4004), reconnects with its last
// position and gets exactly what was published in the gap, in order; a
// forged epoch is reported as not recovered; a bad token gets 4001.
func TestPushGoClient(t *testing.T) {
	cp := startPush(t)

	// The classic shape, unchanged from the old /ws service.
	s := dialPush(t, cp, "/ws", nil)
	s.send(map[string]string{"token": "alice-token", "event": "news"})
	if c := s.expect("connected"); c["user"] != "alice" {
		t.Fatalf("connected as %v, want alice", c["user"])
	}
	res := publish(t, cp, `{"userId":"alice","event":"news","message":"m1"}`)
	if res["delivered"] != float64(1) {
		t.Fatalf("delivered = %v, want 1", res["delivered"])
	}
	m := s.expect("message")
	if m["message"] != "m1" || m["event"] != "news" || m["id"] != res["id"] {
		t.Fatalf("message frame %v does not match the publish (%v)", m, res)
	}
	stream, _ := m["stream"].(string)
	offset, _ := m["offset"].(float64)
	epoch, _ := m["epoch"].(string)
	if stream == "" || epoch == "" {
		t.Fatalf("history is on but the message has no position: %v", m)
	}

	// The operator drops alice: 4004, which a client reconnects after.
	drop(t, cp, "alice")
	if code := s.closeCode(); code != 4004 {
		t.Fatalf("close code %d after admin drop, want 4004", code)
	}
	for i := 2; i <= 4; i++ {
		publish(t, cp, fmt.Sprintf(`{"userId":"alice","event":"news","message":"m%d"}`, i))
	}

	s2 := dialPush(t, cp, "/ws", nil)
	s2.send(map[string]any{"type": "connect", "token": "alice-token", "events": []string{"news"},
		"recover": map[string]any{stream: map[string]any{"offset": offset, "epoch": epoch}}})
	s2.expect("connected")
	rec := s2.expect("recovered")
	if rec["recovered"] != true || rec["stream"] != stream {
		t.Fatalf("recovered frame %v, want recovered=true for %s", rec, stream)
	}
	for i := 2; i <= 4; i++ {
		m := s2.expect("message")
		if m["message"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("recovered message %v, want m%d (in order, none missing)", m, i)
		}
		if m["offset"].(float64) <= offset {
			t.Fatalf("offset %v not after %v", m["offset"], offset)
		}
		offset = m["offset"].(float64)
	}
	publish(t, cp, `{"userId":"alice","event":"news","message":"live"}`)
	if m := s2.expect("message"); m["message"] != "live" {
		t.Fatalf("after recovery got %v, want the live message (no duplicates)", m)
	}

	// A position from another epoch (history lost) is reported, not skipped silently.
	s3 := dialPush(t, cp, "/ws", nil)
	s3.send(map[string]any{"type": "connect", "token": "alice-token", "events": []string{"news"},
		"recover": map[string]any{stream: map[string]any{"offset": 1, "epoch": "not-" + epoch}}})
	s3.expect("connected")
	if rec := s3.expect("recovered"); rec["recovered"] != false {
		t.Fatalf("recovered frame %v, want recovered=false for a wrong epoch", rec)
	}

	// A bad token is refused with 4001 (unauthorized).
	s4 := dialPush(t, cp, "/ws", nil)
	s4.send(map[string]string{"token": "forged", "event": "news"})
	if code := s4.closeCode(); code != 4001 {
		t.Fatalf("close code %d for a bad token, want 4001", code)
	}
}
