package caddyws

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
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

// The fan-out and reload tests hold 1000+ WebSockets on both ends of
// loopback (2000+ descriptors): raise the soft limit to the hard one.
func init() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// pushCaddy is startCaddy with ports picked below the kernel's ephemeral
// range (32768+), so that the thousands of client sockets these tests and
// others on the machine open cannot take a port between its pick and
// Caddy's bind; a load that still meets a taken port is retried with new
// ports. @EXTRA@ in sites is one more port. It returns the extra port too.
func pushCaddy(t *testing.T, sites string) (*testCaddy, int) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		ports := lowPorts(t, 4)
		tc := &testCaddy{t: t, HTTPPort: ports[0], HTTPSPort: ports[1], AdminPort: ports[2]}
		err = tc.load(strings.ReplaceAll(sites, "@EXTRA@", fmt.Sprint(ports[3])))
		if err == nil {
			t.Cleanup(func() { _ = caddy.Stop() })
			return tc, ports[3]
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("loading config: %v", err)
	return nil, 0
}

// lowPorts returns n distinct ports in [20000, 32000) that were free on
// every interface a moment ago.
func lowPorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := 20000 + rand.Intn(12000)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		l.Close()
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatal("no free ports below the ephemeral range")
	}
	return out
}
