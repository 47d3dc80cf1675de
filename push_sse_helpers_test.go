package caddyws

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Helpers for the Server-Sent Events tests, and one subscriber interface
// over both transports for the conformance suite.

// sseEvt is one parsed event of a stream.
type sseEvt struct {
	Event, ID, Data string
	Retry           string
}

// sseStream reads a text/event-stream response on its own goroutine.
type sseStream struct {
	resp   *http.Response
	events chan sseEvt
	mu     sync.Mutex
	err    error
	lastID string
	pings  int
	gate   chan struct{} // closed when reading may start
	once   sync.Once
}

func (s *sseStream) resume() { s.once.Do(func() { close(s.gate) }) }

var sseHTTP = &http.Client{}

// sseRequest builds the subscribe GET.
func sseRequest(t testing.TB, u string, hdr http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	return req
}

// openSSE subscribes and fails the test unless the answer is a 200 event
// stream.
func openSSE(t testing.TB, c *http.Client, u string, hdr http.Header) *sseStream {
	t.Helper()
	s, status, body := trySSE(t, c, u, hdr, false)
	if s == nil {
		t.Fatalf("GET %s: %d %s", u, status, body)
	}
	return s
}

// trySSE subscribes; on an answer other than a 200 event stream it returns
// nil with the status and body.
func trySSE(t testing.TB, c *http.Client, u string, hdr http.Header, paused bool) (*sseStream, int, string) {
	t.Helper()
	if c == nil {
		c = sseHTTP
	}
	resp, err := c.Do(sseRequest(t, u, hdr))
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b := readAllString(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, b
	}
	s := &sseStream{resp: resp, events: make(chan sseEvt, 1<<14), gate: make(chan struct{})}
	if !paused {
		s.resume()
	}
	go s.read()
	t.Cleanup(s.close)
	return s, resp.StatusCode, ""
}

func (s *sseStream) read() {
	defer close(s.events)
	<-s.gate
	var body io.Reader = s.resp.Body
	if s.resp.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(body)
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		body = gz
	}
	br := bufio.NewReader(body)
	var ev sseEvt
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.ID != "" {
				s.mu.Lock()
				s.lastID = ev.ID
				s.mu.Unlock()
			}
			if data != nil {
				ev.Data = strings.Join(data, "\n")
				s.events <- ev
			}
			ev, data = sseEvt{}, nil
		case strings.HasPrefix(line, ":"):
			s.mu.Lock()
			s.pings++
			s.mu.Unlock()
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "event":
				ev.Event = v
			case "id":
				ev.ID = v
			case "data":
				data = append(data, v)
			case "retry":
				ev.Retry = v
			}
		}
	}
}

func (s *sseStream) close() { s.resp.Body.Close() }

// LastID is the id of the last event seen, as an EventSource keeps it.
func (s *sseStream) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// nextEvent returns the next event within d.
func (s *sseStream) nextEvent(d time.Duration) (sseEvt, error) {
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.mu.Lock()
			defer s.mu.Unlock()
			return ev, fmt.Errorf("stream ended: %w", s.err)
		}
		return ev, nil
	case <-time.After(d):
		return sseEvt{}, errTimeout
	}
}

var errTimeout = errors.New("timeout")

// pushSub is a subscriber over either transport, as the conformance suite
// sees it: frames in order, and the way the stream ended.
type pushSub interface {
	// next returns the next frame within d; a close returns a frame of
	// type "close" with the code in Offset.
	next(d time.Duration) (frame, error)
	// kill ends the connection abruptly (the client's side).
	kill()
	// resume starts reading a subscriber opened paused.
	resume()
}

type wsSub struct{ c *websocket.Conn }

func (s wsSub) next(d time.Duration) (frame, error) {
	f, err := tryReadFrame(s.c, d)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return frame{Type: "close", Offset: uint64(ce.Code), Reason: ce.Text}, nil
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return f, errTimeout
	}
	return f, err
}
func (s wsSub) kill()   { s.c.NetConn().Close() }
func (s wsSub) resume() {}

type sseSub struct{ s *sseStream }

func (s sseSub) next(d time.Duration) (frame, error) {
	ev, err := s.s.nextEvent(d)
	if err != nil {
		return frame{}, err
	}
	if ev.Event == "close" {
		var c struct {
			Type   string
			Code   uint64
			Reason string
		}
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil || c.Type != "close" {
			return frame{}, fmt.Errorf("close event %+v: %v", ev, err)
		}
		return frame{Type: "close", Offset: c.Code, Reason: c.Reason}, nil
	}
	var f frame
	if err := json.Unmarshal([]byte(ev.Data), &f); err != nil {
		return f, fmt.Errorf("event %+v: %w", ev, err)
	}
	want := f.Type
	if f.Type == "message" {
		want = sseNameOf(f.Event)
	}
	if ev.Event != want {
		return f, fmt.Errorf("event: %q for a %s frame on %q, want %q", ev.Event, f.Type, f.Event, want)
	}
	return f, nil
}
func (s sseSub) kill()   { s.s.close() }
func (s sseSub) resume() { s.s.resume() }

func sseNameOf(event string) string {
	if event == "" {
		return "message"
	}
	return event
}

// expectFrame reads the next frame of a pushSub and checks its type.
func expectFrame(t testing.TB, s pushSub, typ string) frame {
	t.Helper()
	f, err := s.next(5 * time.Second)
	if err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	if f.Type != typ {
		t.Fatalf("got %+v, want a %s frame", f, typ)
	}
	return f
}

// subOpts says how a conformance subscriber authenticates and what it
// follows.
type subOpts struct {
	token  string
	via    string // "query", "header", "cookie" (with a token)
	events []string
	header http.Header
	// recover: the WebSocket's recover map; for SSE the Last-Event-ID.
	recover map[string]map[string]any
	lastID  string
	// paused: the subscriber reads nothing until resume.
	paused bool
}

// transportCase opens subscribers of one transport.
type transportCase struct {
	name string
	// open subscribes and returns the subscriber after its connected frame
	// (and its subscribed frame, on a WebSocket with events), or the
	// refusal: a close code (WebSocket) or an HTTP status (SSE).
	open func(t *testing.T, tc *testCaddy, path string, o subOpts) (pushSub, int)
}

func tokenHeaders(o subOpts, q url.Values) http.Header {
	h := http.Header{}
	for k, v := range o.header {
		h[k] = v
	}
	switch o.via {
	case "query":
		q.Set("token", o.token)
	case "header":
		h.Set("Authorization", "Bearer "+o.token)
	case "cookie":
		h.Set("Cookie", "caddyws_token="+o.token)
	}
	return h
}

var transportCases = []transportCase{
	{name: "websocket", open: func(t *testing.T, tc *testCaddy, path string, o subOpts) (pushSub, int) {
		q := url.Values{}
		h := tokenHeaders(o, q)
		u := tc.WSURL(path)
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		c, resp, err := pushDialer.Dial(u, h)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial %s: %v", u, err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { c.Close() })
		s := wsSub{c}
		if o.via == "" && o.token != "" {
			b, _ := json.Marshal(map[string]any{"type": "connect", "token": o.token, "events": o.events, "recover": o.recover})
			sendJSON(t, c, string(b))
		} else if len(o.events) > 0 || o.recover != nil {
			b, _ := json.Marshal(map[string]any{"type": "subscribe", "events": o.events, "recover": o.recover})
			sendJSON(t, c, string(b))
		}
		for {
			f, err := s.next(5 * time.Second)
			if err != nil {
				t.Fatalf("websocket subscribe: %v", err)
			}
			switch f.Type {
			case "close":
				return nil, int(f.Offset)
			case "connected":
				if o.via == "" || (len(o.events) == 0 && o.recover == nil) {
					return s, 0
				}
			case "subscribed":
				return s, 0
			}
		}
	}},
	{name: "sse", open: func(t *testing.T, tc *testCaddy, path string, o subOpts) (pushSub, int) {
		q := url.Values{}
		if o.via == "" && o.token != "" {
			o.via = "query"
		}
		h := tokenHeaders(o, q)
		for _, e := range o.events {
			q.Add("event", e)
		}
		if o.lastID != "" {
			h.Set("Last-Event-ID", o.lastID)
		}
		u := tc.URL(path)
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		st, status, _ := trySSE(t, nil, u, h, o.paused)
		if st == nil {
			return nil, status
		}
		s := sseSub{st}
		if !o.paused {
			expectFrame(t, s, "connected")
		}
		return s, 0
	}},
}
