package caddyws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tcpEcho starts a TCP echo server on loopback and returns its address.
func tcpEcho(t testing.TB) string {
	t.Helper()
	return tcpServe(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	})
}

// tcpServe runs handle for every connection to a new loopback listener.
func tcpServe(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().String()
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// wsDial opens a WebSocket; on a refused handshake it returns the status
// and the JSON error message.
func wsDial(t testing.TB, url string, hdr http.Header) (*websocket.Conn, int, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	c, resp, err := d.Dial(url, hdr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		return c, resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error string }
	_ = json.Unmarshal(b, &e)
	return nil, resp.StatusCode, e.Error
}

// mustTunnel opens a WebSocket that must be accepted.
func mustTunnel(t testing.TB, url string, hdr http.Header) *websocket.Conn {
	t.Helper()
	c, status, msg := wsDial(t, url, hdr)
	if c == nil {
		t.Fatalf("dial %s: status %d: %s", url, status, msg)
	}
	return c
}

// echoRoundTrip sends msg and expects it back within a few seconds.
func echoRoundTrip(t testing.TB, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.BinaryMessage, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	for len(got) < len(msg) {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("reading echo of %q (got %q): %v", msg, got, err)
		}
		got = append(got, p...)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// expectTunnelClose reads until the close frame and checks its code.
func expectTunnelClose(t testing.TB, c *websocket.Conn, code int, within time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want close %d, got %v", code, err)
		}
		if ce.Code != code {
			t.Fatalf("want close %d, got %d %q", code, ce.Code, ce.Text)
		}
		return ce.Text
	}
}

// openFDs counts this process's open file descriptors (sockets included).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// settle waits until count() is at most max, returning the last count.
func settle(count func() int, max int, within time.Duration) int {
	deadline := time.Now().Add(within)
	n := count()
	for n > max && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		n = count()
	}
	return n
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	// Keep the dump short enough to read in a test log.
	s := string(buf[:n])
	if len(s) > 20000 {
		s = s[:20000]
	}
	return s
}

func originHeader(origin string) http.Header {
	return http.Header{"Origin": []string{origin}}
}

// writeTokenFile writes a websockify token file.
func writeTokenFile(t testing.TB, path string, lines ...string) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		fmt.Fprintln(&b, l)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func hostPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

func runtimeGoroutines() int { return runtime.NumGoroutine() }

// startTunnelCaddy is startCaddy (the tunnel tests' name for it).
func startTunnelCaddy(t *testing.T, sites string) *testCaddy {
	t.Helper()
	return startCaddy(t, sites)
}

// quietPort returns a port reserved for this test (testcaddy.Port).
func quietPort(t testing.TB) int {
	t.Helper()
	return freePort(t)
}
