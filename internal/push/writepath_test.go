package push

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// The write path under a reader that stops: a publish writes what the
// socket takes at once, the rest goes to the writer goroutine, and the
// client still gets every byte of every frame, in order. A small send
// buffer on the server makes the non-waiting writes come up short, in the
// middle of frames.

const inlineFrames = 300

func inlineBody(i int) string { return fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 2000)) }

// inlineOptions queue every frame the write-path tests publish.
var inlineOptions = Options{QueueSize: 2 * inlineFrames, QueueBytes: 8 << 20}

// inlineConnOptions authenticate a WebSocket subscriber by its token (the
// user id).
var inlineConnOptions = ConnOptions{Verifier: auth.TokenIsUser{}, MaxFrameSize: 4096, MaxEvents: 10, AuthTimeout: 2 * time.Second, VerifyTimeout: time.Second}

// inlineWSHub serves WebSocket subscribers on a hub with inlineOptions,
// calling onConn (if not nil) with each connection's socket.
func inlineWSHub(tb testing.TB, onConn func(net.Conn)) (*Hub, string) {
	tb.Helper()
	return serveTestHubWith(tb, inlineOptions, inlineConnOptions, memory.New(broker.History{}, nil), onConn)
}

func inlineHub(t *testing.T) *Hub {
	t.Helper()
	h, err := New(inlineOptions, memory.New(broker.History{}, nil), nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// smallSendBuffer shrinks the server side's socket send buffer.
func smallSendBuffer(t *testing.T, nc net.Conn) {
	t.Helper()
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		t.Fatalf("server conn is %T, not TCP", nc)
	}
	if err := tc.SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
}

func publishInline(t *testing.T, h *Hub) {
	t.Helper()
	for i := range inlineFrames {
		body, _ := json.Marshal(map[string]any{"userId": "u", "message": inlineBody(i)})
		if res := tpublish(t, h, string(body)); res.Delivered != 1 {
			t.Fatalf("publish %d delivered to %d", i, res.Delivered)
		}
	}
}

func TestWebSocketWritesSurviveShortNonWaitingWrites(t *testing.T) {
	inline := make(chan bool, 1)
	h, url := inlineWSHub(t, func(nc net.Conn) {
		smallSendBuffer(t, nc)
		inline <- rawSocket(nc) != nil
	})
	c := tdial(t, url, `{"type":"connect","token":"u"}`)
	if !<-inline && rawSocketSupported {
		t.Fatal("a plain TCP connection got no non-waiting writes")
	}
	if f := tread(t, c); f.Type != "connected" {
		t.Fatalf("first frame %+v", f)
	}
	// The client reads nothing while everything is published.
	publishInline(t, h)
	for i := range inlineFrames {
		f := tread(t, c)
		var got string
		if err := json.Unmarshal(f.Message, &got); err != nil || got != inlineBody(i) {
			t.Fatalf("frame %d: %.40q (%v)", i, f.Message, err)
		}
	}
}

func TestHijackedSSEWritesSurviveShortNonWaitingWrites(t *testing.T) {
	h := inlineHub(t)
	returned := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(sseTestHandler(h, returned))
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	defer srv.Close()
	nc, resp := sseSubscribe(t, srv.Listener.Addr().String())
	defer nc.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || len(resp.TransferEncoding) == 0 {
		t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
	}
	events := sseReader(resp.Body)
	if ev := <-events; ev.name != "connected" {
		t.Fatalf("first event %+v", ev)
	}
	<-returned // the request's goroutine is gone: the hub writes the stream
	if rawSocketSupported {
		waitFor(t, "publishes to write the stream themselves", func() bool { return h.liveInline() == 1 })
	}
	publishInline(t, h)
	for i := range inlineFrames {
		ev := <-events
		var f tframe
		if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
			t.Fatalf("event %d: %q: %v", i, ev.data, err)
		}
		var got string
		if err := json.Unmarshal(f.Message, &got); err != nil || got != inlineBody(i) {
			t.Fatalf("event %d: %.40q (%v)", i, f.Message, err)
		}
	}
	// A server-side end: the close event, then the end of the chunked
	// body (a clean EOF, not a cut one).
	h.Close()
	if ev := <-events; ev.name != "close" {
		t.Fatalf("last event %+v", ev)
	}
	if ev, ok := <-events; ok || ev.err != nil {
		t.Fatalf("after the close event: %+v (open %v)", ev, ok)
	}
}

func TestHijackedSSEClientLeavingEndsTheStream(t *testing.T) {
	h := inlineHub(t)
	srv := httptest.NewServer(sseTestHandler(h, nil))
	defer srv.Close()
	for range 20 {
		nc, resp := sseSubscribe(t, srv.Listener.Addr().String())
		if ev := <-sseReader(resp.Body); ev.name != "connected" {
			t.Fatalf("first event %+v", ev)
		}
		nc.Close()
	}
	waitFor(t, "every stream to end", func() bool {
		h.liveMu.Lock()
		defer h.liveMu.Unlock()
		return len(h.live) == 0 && h.reserved.Load() == 0
	})
}

// sseSubscribe opens an SSE stream on addr (HTTP/1.1, GET /sub) and reads
// the response head.
func sseSubscribe(t *testing.T, addr string) (net.Conn, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(nc, "GET /sub HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return nc, resp
}

// sseTestHandler serves SSE subscribers of user u on h, allowed to take
// HTTP/1.1 streams over; returned, if not nil, gets a value each time the
// request's handler returns.
func sseTestHandler(h *Hub, returned chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.Reserve(TransportSSE); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if returned != nil {
			defer func() { returned <- struct{}{} }()
		}
		id := auth.Identity{User: "u"}
		if err := h.ServeSSE(w, r, SSEOptions{ConnOptions: ConnOptions{Identity: &id, MaxEvents: 10}, Hijack: true}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
}

// smallBufferListener gives each accepted connection a small send buffer.
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return nc, err
}

type sseEv struct {
	name, data string
	err        error
}

// sseReader parses events from body until it ends; a read error other
// than a clean EOF is the last value sent.
func sseReader(body io.Reader) <-chan sseEv { return sseReaderN(body, -1) }

// sseReaderN is sseReader that stops reading after n events (n < 0: all).
func sseReaderN(body io.Reader, n int) <-chan sseEv {
	out := make(chan sseEv, 2*inlineFrames)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		sc.Buffer(nil, 1<<20)
		var ev sseEv
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					out <- ev
					if n--; n == 0 {
						return
					}
				}
				ev = sseEv{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[len("data: "):]
			}
		}
		if err := sc.Err(); err != nil {
			out <- sseEv{err: err}
		}
	}()
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveInline counts the connections written by non-waiting writes.
func (h *Hub) liveInline() int {
	h.liveMu.Lock()
	defer h.liveMu.Unlock()
	n := 0
	for c := range h.live {
		c.mu.Lock()
		if c.inline {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// TestStuckHTTP2StreamIsCutAfterTheWriteTimeout: a stream written through
// net/http arms no deadline per write; one whose reader stopped (HTTP/2
// flow control then blocks the write) is cut by the hub's sweep once the
// write made no progress for the write timeout, and its slot is freed.
func TestStuckHTTP2StreamIsCutAfterTheWriteTimeout(t *testing.T) {
	h, err := New(Options{WriteTimeout: 500 * time.Millisecond, PingInterval: 400 * time.Millisecond, QueueBytes: 8 << 20, QueueSize: 4096},
		memory.New(broker.History{}, nil), nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewUnstartedServer(sseTestHandler(h, nil))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/sub", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s", resp.Proto)
	}
	// Read the connected event, then nothing: 8 MiB published fill the
	// stream's flow-control window and the write blocks.
	if ev := <-sseReaderN(resp.Body, 1); ev.name != "connected" {
		t.Fatalf("first event %+v", ev)
	}
	big := strings.Repeat("x", 32<<10)
	start := time.Now()
	for range 200 {
		body, _ := json.Marshal(map[string]any{"userId": "u", "message": big})
		tpublish(t, h, string(body))
	}
	waitFor(t, "the stuck stream to be cut", func() bool {
		h.liveMu.Lock()
		defer h.liveMu.Unlock()
		return len(h.live) == 0 && h.reserved.Load() == 0
	})
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("cut %v after the first publish, before the write timeout", d)
	}
}

// A client that sends on a stream taken over (an EventSource never does)
// has what it sends read and discarded up to a bound; past it the stream
// ends with a close event and its slot is free.
func TestHijackedSSEClientSendingTooMuchEndsTheStream(t *testing.T) {
	h := inlineHub(t)
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(sseTestHandler(h, returned))
	defer srv.Close()
	nc, resp := sseSubscribe(t, srv.Listener.Addr().String())
	defer nc.Close()
	events := sseReader(resp.Body)
	if ev := <-events; ev.name != "connected" {
		t.Fatalf("first event %+v", ev)
	}
	<-returned
	// Up to the bound the stream goes on.
	if _, err := nc.Write(make([]byte, maxSSEClientBytes/2)); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"userId": "u", "message": "still here"})
	waitFor(t, "the stream to be written by publishes", func() bool { return h.liveInline() == 1 || !rawSocketSupported })
	if res := tpublish(t, h, string(body)); res.Delivered != 1 {
		t.Fatalf("delivered to %d", res.Delivered)
	}
	if ev := <-events; ev.name == "close" || !strings.Contains(ev.data, "still here") {
		t.Fatalf("after half the bound: %+v", ev)
	}
	if _, err := nc.Write(make([]byte, maxSSEClientBytes)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.name != "close" || !strings.Contains(ev.data, "1009") {
			t.Fatalf("past the bound: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end past the bound")
	}
	waitFor(t, "the stream's slot to be free", func() bool {
		h.liveMu.Lock()
		defer h.liveMu.Unlock()
		return len(h.live) == 0 && h.reserved.Load() == 0
	})
}
