package tunnel

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// relayServer is an HTTP server whose every request is upgraded and relayed
// to the upstream address, as the Caddy handler does it.
type relayServer struct {
	*httptest.Server
	mu       sync.Mutex
	sessions []*Session
	results  chan Result
}

func newRelayServer(t testing.TB, upstream string, opts Options) *relayServer {
	t.Helper()
	rs := &relayServer{results: make(chan Result, 4096)}
	up := websocket.Upgrader{WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{}, CheckOrigin: func(*http.Request) bool { return true }}
	rs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, &up, opts)
		if err != nil {
			return
		}
		rs.mu.Lock()
		rs.sessions = append(rs.sessions, s)
		rs.mu.Unlock()
		c, err := net.DialTimeout("tcp", upstream, time.Second)
		if err != nil {
			rs.results <- s.Fail(CloseUnreachable, "upstream unreachable")
			return
		}
		rs.results <- s.Run(c)
	}))
	// A server read timeout (Caddy's timeouts read_body) leaves a deadline
	// on the hijacked connection; tunnels must outlive it.
	rs.Config.ReadTimeout = 500 * time.Millisecond
	rs.Start()
	t.Cleanup(rs.Close)
	return rs
}

func (rs *relayServer) dial(t testing.TB) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(rs.URL, "http")+"/", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func (rs *relayServer) result(t testing.TB) Result {
	t.Helper()
	select {
	case r := <-rs.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel did not end")
		return Result{}
	}
}

// listen starts a TCP server running handle for every connection.
func listen(t testing.TB, handle func(net.Conn)) string {
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

func echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// TestRelayIsByteExactBothWaysWithMixedFrames sends random bytes in frames
// of random sizes (text and binary) through an echo upstream while reading
// the echo concurrently, and compares.
func TestRelayIsByteExactBothWaysWithMixedFrames(t *testing.T) {
	rs := newRelayServer(t, listen(t, echo), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	data := make([]byte, 4<<20)
	_, _ = rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		for buf.Len() < len(data) {
			_, p, err := ws.ReadMessage()
			if err != nil {
				break
			}
			buf.Write(p)
		}
		got <- buf.Bytes()
	}()
	for off := 0; off < len(data); {
		n := min(len(data)-off, []int{1, 7, 100, 1024, 4096, 65536, 200000}[mrand.IntN(7)])
		mt := websocket.BinaryMessage
		if mrand.IntN(4) == 0 {
			mt = websocket.TextMessage // forwarded as bytes, like binary
		}
		w, err := ws.NextWriter(mt)
		if err != nil {
			t.Fatal(err)
		}
		// Write the message in pieces so it crosses as several frames.
		for p := data[off : off+n]; len(p) > 0; {
			k := min(len(p), 1+mrand.IntN(5000))
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if g := <-got; !bytes.Equal(g, data) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(g), len(data))
	}
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	r := rs.result(t)
	if r.BytesUp != int64(len(data)) || r.BytesDown != int64(len(data)) {
		t.Fatalf("counted up=%d down=%d, want %d each", r.BytesUp, r.BytesDown, len(data))
	}
	if r.EndedBy != EndedByClient || r.Code != CloseNormal {
		t.Fatalf("result %+v, want ended by client with 1000", r)
	}
}

func TestRelayUpstreamEOFClosesWith1000(t *testing.T) {
	rs := newRelayServer(t, listen(t, func(c net.Conn) {
		c.Write([]byte("hello"))
		c.Close()
	}), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, p, err := ws.ReadMessage()
	if err != nil || string(p) != "hello" {
		t.Fatalf("read %q, %v", p, err)
	}
	_, _, err = ws.ReadMessage()
	if closeCode(err) != CloseNormal {
		t.Fatalf("got %v, want close 1000", err)
	}
	if r := rs.result(t); r.EndedBy != EndedByUpstream || r.Code != CloseNormal || r.BytesDown != 5 {
		t.Fatalf("result %+v", r)
	}
}

func TestRelayClientCloseHalfClosesUpstream(t *testing.T) {
	gotEOF := make(chan []byte, 1)
	rs := newRelayServer(t, listen(t, func(c net.Conn) {
		defer c.Close()
		b, err := io.ReadAll(c) // ends at the half-close, not a reset
		if err != nil {
			b = nil
		}
		gotEOF <- b
	}), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte("last words"))
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); closeCode(err) != CloseNormal {
		t.Fatalf("close reply: %v", err)
	}
	select {
	case b := <-gotEOF:
		if string(b) != "last words" {
			t.Fatalf("upstream got %q before EOF, want %q (a reset gives nil)", b, "last words")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream never saw EOF")
	}
	if r := rs.result(t); r.EndedBy != EndedByClient {
		t.Fatalf("result %+v", r)
	}
}

func TestRelayDeadUpstreamClosesWith1011(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	rs := newRelayServer(t, addr, Options{})
	ws := rs.dial(t)
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); closeCode(err) != CloseUnreachable {
		t.Fatalf("got %v, want close 1011", err)
	}
	rs.result(t)
}

func TestRelayShutdownSendsGoingAwayAndHalfClosesUpstream(t *testing.T) {
	eof := make(chan struct{})
	rs := newRelayServer(t, listen(t, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c)
		close(eof)
		c.Close()
	}), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs.mu.Lock()
		n := len(rs.sessions)
		rs.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	rs.sessions[0].Shutdown(CloseGoingAway, "server stopping")
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); closeCode(err) != CloseGoingAway {
		t.Fatalf("got %v, want 1001", err)
	}
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream not closed")
	}
	if r := rs.result(t); r.Code != CloseGoingAway || r.EndedBy != EndedByServer {
		t.Fatalf("result %+v", r)
	}
}

func TestRelayIdleTimeoutClosesWith4408(t *testing.T) {
	rs := newRelayServer(t, listen(t, echo), Options{IdleTimeout: 300 * time.Millisecond})
	ws := rs.dial(t)
	defer ws.Close()
	start := time.Now()
	// Traffic keeps it open past the timeout.
	for time.Since(start) < 600*time.Millisecond {
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte("ping"))
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatalf("closed while active: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); closeCode(err) != CloseIdleTimeout {
		t.Fatalf("got %v, want %d", err, CloseIdleTimeout)
	}
	rs.result(t)
}

// TestRelayCoalescesSmallFramesIntoFewWrites checks the small-message path:
// a burst of 1 KiB frames reaches the upstream in far fewer reads.
func TestRelayCoalescesSmallFramesIntoFewWrites(t *testing.T) {
	reads := make(chan int, 1)
	const frames, size = 2000, 1024
	rs := newRelayServer(t, listen(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 1<<20)
		total, n := 0, 0
		for total < frames*size {
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			total += k
			n++
		}
		reads <- n
	}), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	msg := make([]byte, size)
	for range frames {
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case n := <-reads:
		t.Logf("%d frames of %d bytes arrived in %d upstream reads", frames, size, n)
		if n > frames/4 {
			t.Fatalf("%d reads for %d frames: small frames are not coalesced", n, frames)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not get the bytes")
	}
}

// TestRelayPushesBackOnAClientFlood: an upstream that reads nothing must
// stall the client's writes after a bounded amount (socket buffers plus one
// relay buffer), not let the relay absorb everything.
func TestRelayPushesBackOnAClientFlood(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	rs := newRelayServer(t, listen(t, func(c net.Conn) {
		<-hold // never reads
		c.Close()
	}), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	chunk := make([]byte, 64<<10)
	sent := 0
	_ = ws.SetWriteDeadline(time.Now().Add(3 * time.Second))
	for sent < 256<<20 {
		if err := ws.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
			break
		}
		sent += len(chunk)
	}
	t.Logf("client could write %d KiB before the stalled upstream pushed back", sent>>10)
	if sent >= 256<<20 {
		t.Fatal("256 MiB written into a tunnel whose upstream reads nothing: no backpressure")
	}
}

// TestRelayPushesBackOnAnUpstreamFlood: a client that reads nothing must
// stall the upstream's writes.
func TestRelayPushesBackOnAnUpstreamFlood(t *testing.T) {
	wrote := make(chan int, 1)
	rs := newRelayServer(t, listen(t, func(c net.Conn) {
		defer c.Close()
		chunk := make([]byte, 64<<10)
		n := 0
		_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		for n < 256<<20 {
			k, err := c.Write(chunk)
			n += k
			if err != nil {
				break
			}
		}
		wrote <- n
	}), Options{})
	ws := rs.dial(t) // never reads
	defer ws.Close()
	select {
	case n := <-wrote:
		t.Logf("upstream could write %d KiB before the idle client pushed back", n>>10)
		if n >= 256<<20 {
			t.Fatal("256 MiB written towards a client that reads nothing: no backpressure")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream writer did not finish")
	}
}

func TestRelayOutlivesTheServerReadTimeout(t *testing.T) {
	rs := newRelayServer(t, listen(t, echo), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	echoMsg := func(m string) {
		t.Helper()
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte(m))
		_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, p, err := ws.ReadMessage(); err != nil || string(p) != m {
			t.Fatalf("echo %q: %q %v", m, p, err)
		}
	}
	echoMsg("before")
	time.Sleep(time.Second) // twice the server's ReadTimeout
	echoMsg("after")
}

// TestRelayFlushesWhenAControlFrameTrailsTheData sends a data frame and a
// ping in one TCP segment, then waits for the echo. The ping left in the
// read buffer must not make the relay hold the gathered data back while it
// waits for a next frame that the client only sends after the echo.
func TestRelayFlushesWhenAControlFrameTrailsTheData(t *testing.T) {
	rs := newRelayServer(t, listen(t, echo), Options{})
	ws := rs.dial(t)
	defer ws.Close()
	payload := []byte("0123456789")
	// Masked frames with an all-zero key, so the payload bytes stay as they are.
	raw := append([]byte{0x82, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	raw = append(raw, 0x89, 0x80, 0, 0, 0, 0) // ping, empty
	if _, err := ws.NetConn().Write(raw); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, p, err := ws.ReadMessage()
	if err != nil || string(p) != string(payload) {
		t.Fatalf("echo: read %q, %v; want %q", p, err, payload)
	}
}
