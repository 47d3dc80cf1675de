package caddyws

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Helpers for the websocket_push integration tests.

var pushDialer = &websocket.Dialer{HandshakeTimeout: 5 * time.Second}

// dialPush opens a subscriber WebSocket and fails the test on error.
func dialPush(t testing.TB, url string, hdr http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := pushDialer.Dial(url, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendJSON writes a text frame.
func sendJSON(t testing.TB, c *websocket.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatalf("writing %s: %v", s, err)
	}
}

// frame is a decoded server frame.
type frame struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	User      string          `json:"user"`
	Event     string          `json:"event"`
	Events    []string        `json:"events"`
	Message   json.RawMessage `json:"message"`
	Stream    string          `json:"stream"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	Code      string          `json:"code"`
	Reason    string          `json:"reason"`
}

// readFrame reads one frame within d.
func readFrame(t testing.TB, c *websocket.Conn, d time.Duration) frame {
	t.Helper()
	f, err := tryReadFrame(c, d)
	if err != nil {
		t.Fatalf("reading frame: %v", err)
	}
	return f
}

func tryReadFrame(c *websocket.Conn, d time.Duration) (frame, error) {
	var f frame
	_ = c.SetReadDeadline(time.Now().Add(d))
	typ, b, err := c.ReadMessage()
	if err != nil {
		return f, err
	}
	if typ != websocket.TextMessage {
		return f, errors.New("not a text frame")
	}
	err = json.Unmarshal(b, &f)
	return f, err
}

// expectType reads one frame and checks its type.
func expectType(t testing.TB, c *websocket.Conn, typ string) frame {
	t.Helper()
	f := readFrame(t, c, 5*time.Second)
	if f.Type != typ {
		t.Fatalf("got frame %+v, want type %q", f, typ)
	}
	return f
}

// expectClose reads until the connection closes and checks the code.
func expectClose(t testing.TB, c *websocket.Conn, code int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_ = c.SetReadDeadline(deadline)
		_, b, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != code {
				t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Text, code)
			}
			return
		}
		t.Fatalf("want close %d, got %v (last %s)", code, err, b)
	}
}

// expectSilence checks that nothing arrives within d.
func expectSilence(t testing.TB, c *websocket.Conn, d time.Duration) {
	t.Helper()
	f, err := tryReadFrame(c, d)
	if err == nil {
		t.Fatalf("unexpected frame %+v", f)
	}
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("unexpected error while expecting silence: %v", err)
	}
}

// Longer than the handler's 10 s publish timeout, so a test sees its 503 rather than racing it.
var pushHTTP = &http.Client{Timeout: 15 * time.Second}

// postPush publishes body with the bearer key (none when key is "").
func postPush(t testing.TB, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := pushHTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mustPublish publishes and returns the delivered count.
func mustPublish(t testing.TB, url, key, body string) int {
	t.Helper()
	st, b := postPush(t, url, key, body)
	if st != http.StatusOK {
		t.Fatalf("publish %s: %d %s", body, st, b)
	}
	var r struct{ Delivered int }
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		t.Fatalf("publish response %q: %v", b, err)
	}
	return r.Delivered
}

// waitGoroutines waits until the goroutine count is at most max.
func waitGoroutines(t testing.TB, max int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	n := 0
	for time.Now().Before(deadline) {
		if n = runtime.NumGoroutine(); n <= max {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Fatalf("goroutines: %d, want <= %d\n%s", n, max, buf)
}

func jsonDecode(r *http.Request, v any) error {
	return json.NewDecoder(r.Body).Decode(v)
}

func readAllString(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
