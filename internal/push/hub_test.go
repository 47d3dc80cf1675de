package push

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// Engine tests without Caddy: a hub behind an httptest server.

func newTestHub(t *testing.T, opts Options) (*Hub, string) {
	t.Helper()
	return serveTestHub(t, opts, ConnOptions{Verifier: auth.TokenIsUser{}, MaxFrameSize: 4096, MaxEvents: 10,
		AuthTimeout: 2 * time.Second, VerifyTimeout: time.Second})
}

// serveTestHub starts a hub on a memory broker behind an httptest server
// whose upgrades are served with co; it returns the hub and its ws:// URL.
func serveTestHub(tb testing.TB, opts Options, co ConnOptions) (*Hub, string) {
	tb.Helper()
	return serveTestHubOn(tb, opts, co, memory.New(opts.History, nil))
}

// serveTestHubOn is serveTestHub on the broker b.
func serveTestHubOn(tb testing.TB, opts Options, co ConnOptions, b broker.Broker) (*Hub, string) {
	tb.Helper()
	return serveTestHubWith(tb, opts, co, b, nil)
}

// serveTestHubWith is serveTestHubOn that calls onConn, if not nil, with
// each upgraded connection before the hub serves it.
func serveTestHubWith(tb testing.TB, opts Options, co ConnOptions, b broker.Broker, onConn func(net.Conn)) (*Hub, string) {
	tb.Helper()
	h, err := New(opts, b, nil, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferPool: &sync.Pool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.Reserve(TransportWebSocket); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			h.Release()
			return
		}
		if onConn != nil {
			onConn(ws.NetConn())
		}
		go h.Serve(ws, co)
	}))
	tb.Cleanup(func() { h.Close(); srv.Close() })
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

type tframe struct {
	Type      string          `json:"type"`
	Event     string          `json:"event"`
	Message   json.RawMessage `json:"message"`
	Stream    string          `json:"stream"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
}

func tdial(t testing.TB, url, first string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteMessage(websocket.TextMessage, []byte(first)); err != nil {
		t.Fatal(err)
	}
	return c
}

func tread(t testing.TB, c *websocket.Conn) tframe {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f tframe
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return f
}

func tpublish(t *testing.T, h *Hub, body string) PublishResult {
	t.Helper()
	p, err := ParsePublishBody([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Publish(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRecovery: within the history window nothing is missing or
// duplicated, even with publishes racing the reconnect; outside it and
// across an epoch change the client is told explicitly.
func TestRecovery(t *testing.T) {
	h, url := newTestHub(t, Options{Name: "t", History: broker.History{Size: 50}, QueueSize: 1000})
	a := tdial(t, url, `{"type":"connect","token":"alice","events":["news"]}`)
	if f := tread(t, a); f.Type != "connected" {
		t.Fatalf("%+v", f)
	}
	var last tframe
	for i := 1; i <= 3; i++ {
		tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
		last = tread(t, a)
		if last.Stream != "event:news" || last.Offset != uint64(i) || last.Epoch == "" || string(last.Message) != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v", i, last)
		}
	}
	a.Close()

	// Publishes before and during the reconnect.
	for i := 4; i <= 10; i++ {
		tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 11; i <= 40; i++ {
			tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
			if i == 25 {
				<-stop
			}
		}
	}()
	b := tdial(t, url, fmt.Sprintf(`{"type":"connect","token":"alice","events":["news"],"recover":{"event:news":{"offset":3,"epoch":%q}}}`, last.Epoch))
	if f := tread(t, b); f.Type != "connected" {
		t.Fatalf("%+v", f)
	}
	if f := tread(t, b); f.Type != "recovered" || !f.Recovered || f.Stream != "event:news" {
		t.Fatalf("want recovered:true, got %+v", f)
	}
	close(stop)
	wg.Wait()
	for want := uint64(4); want <= 40; want++ {
		f := tread(t, b)
		if f.Type != "message" || f.Offset != want || string(f.Message) != fmt.Sprint(want) {
			t.Fatalf("want offset %d, got %+v", want, f)
		}
	}
	b.Close()

	// Outside the window: 60 more than the history holds.
	for i := 41; i <= 100; i++ {
		tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
	}
	c := tdial(t, url, fmt.Sprintf(`{"type":"connect","token":"alice","events":["news"],"recover":{"event:news":{"offset":40,"epoch":%q}}}`, last.Epoch))
	tread(t, c)
	if f := tread(t, c); f.Type != "recovered" || f.Recovered || f.Offset != 100 {
		t.Fatalf("want recovered:false at 100, got %+v", f)
	}
	tpublish(t, h, `{"event":"news","message":101}`)
	if f := tread(t, c); f.Offset != 101 {
		t.Fatalf("live after a gap: %+v", f)
	}

	// Another epoch: not recoverable.
	d := tdial(t, url, `{"type":"connect","token":"alice","events":["news"],"recover":{"event:news":{"offset":100,"epoch":"other"}}}`)
	tread(t, d)
	if f := tread(t, d); f.Type != "recovered" || f.Recovered {
		t.Fatalf("want recovered:false on epoch change, got %+v", f)
	}
	// A stream the connection cannot read is refused, not replayed.
	e := tdial(t, url, `{"type":"connect","token":"bob","events":["x"],"recover":{"user:alice":{"offset":0,"epoch":""}}}`)
	tread(t, e)
	if f := tread(t, e); f.Type != "error" {
		t.Fatalf("want error for a foreign stream, got %+v", f)
	}
}

// expiring accepts any token for one user whose identity expires soon.
type expiring struct{ d time.Duration }

func (e expiring) Verify(_ context.Context, tok string) (auth.Identity, error) {
	if tok == "bad" {
		return auth.Identity{}, fmt.Errorf("no: %w", auth.ErrUnauthorized)
	}
	if tok == "down" {
		return auth.Identity{}, fmt.Errorf("callback: %w", auth.ErrUnavailable)
	}
	return auth.Identity{User: tok, Expires: time.Now().Add(e.d)}, nil
}

// TestIdentityExpiryAndAuthErrors: an identity is closed with 4001 when it
// expires (found by the keepalive sweep); refused and undecidable tokens
// get 4001 and 1013.
func TestIdentityExpiryAndAuthErrors(t *testing.T) {
	h, err := New(Options{Name: "x", PingInterval: 400 * time.Millisecond}, memory.New(broker.History{}, nil), nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.Reserve(TransportWebSocket)
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			h.Release()
			return
		}
		go h.Serve(ws, ConnOptions{Verifier: expiring{700 * time.Millisecond}, MaxFrameSize: 4096,
			AuthTimeout: time.Second, VerifyTimeout: time.Second})
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	closeCode := func(c *websocket.Conn) int {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					return ce.Code
				}
				t.Fatalf("read: %v", err)
			}
		}
	}
	start := time.Now()
	c := tdial(t, url, `{"token":"alice"}`)
	if code := closeCode(c); code != CloseUnauthorized || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("expiry: close %d after %v", code, time.Since(start))
	}
	if code := closeCode(tdial(t, url, `{"token":"bad"}`)); code != CloseUnauthorized {
		t.Fatalf("refused token: %d", code)
	}
	if code := closeCode(tdial(t, url, `{"token":"down"}`)); code != CloseTryAgainLater {
		t.Fatalf("verifier down: %d", code)
	}
}

// TestBurstInOrderAndClientPing: a burst larger than one write batch
// (maxBatchFrames, maxBatchBytes) arrives complete and in order, and a
// client's ping is answered (through the single writer) while it streams.
func TestBurstInOrderAndClientPing(t *testing.T) {
	h, url := newTestHub(t, Options{Name: "b", QueueSize: 5000})
	c := tdial(t, url, `{"token":"alice"}`)
	if f := tread(t, c); f.Type != "connected" {
		t.Fatalf("%+v", f)
	}
	pong := make(chan struct{}, 1)
	c.SetPongHandler(func(string) error {
		select {
		case pong <- struct{}{}:
		default:
		}
		return nil
	})
	big := strings.Repeat("y", 2000)
	const n = 1500 // > maxBatchFrames, and 3 MB > maxBatchBytes
	for i := 0; i < n; i++ {
		tpublish(t, h, fmt.Sprintf(`{"userId":"alice","message":{"i":%d,"p":%q}}`, i, big))
	}
	if err := c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		f := tread(t, c)
		var m struct{ I int }
		if err := json.Unmarshal(f.Message, &m); err != nil || m.I != i {
			t.Fatalf("frame %d: %s (%v)", i, f.Message, err)
		}
	}
	// The pong is read by gorilla while reading: publish one more frame so
	// ReadMessage returns after processing it.
	tpublish(t, h, `{"userId":"alice","message":"end"}`)
	tread(t, c)
	select {
	case <-pong:
	case <-time.After(5 * time.Second):
		t.Fatal("no pong for the client's ping")
	}
}

// hookSince runs hook before each Since: a publish landing exactly while a
// connection recovers (live frames buffered, history being fetched).
type hookSince struct {
	*memory.Broker
	hook func()
}

func (b hookSince) Since(ctx context.Context, s string, p broker.Position, limit int) ([]broker.Message, broker.Position, error) {
	if b.hook != nil {
		b.hook()
	}
	return b.Broker.Since(ctx, s, p, limit)
}

// TestRecoveryDedupDuringReplay: a message published between the live
// subscription and the history fetch is in both; the client gets it once.
func TestRecoveryDedupDuringReplay(t *testing.T) {
	hist := broker.History{Size: 100}
	hb := &hookSince{Broker: memory.New(hist, nil)}
	h, url := serveTestHubOn(t, Options{Name: "d", History: hist}, ConnOptions{Verifier: auth.TokenIsUser{},
		MaxFrameSize: 4096, AuthTimeout: time.Second, VerifyTimeout: time.Second}, hb)
	tpublish(t, h, `{"event":"news","message":1}`)
	_, pos, _ := hb.Broker.Since(context.Background(), "event:news", broker.Position{}, 1)
	tpublish(t, h, `{"event":"news","message":2}`)
	hb.hook = func() {
		hb.hook = nil
		tpublish(t, h, `{"event":"news","message":3}`)
	}
	c := tdial(t, url, fmt.Sprintf(`{"type":"connect","token":"a","events":["news"],"recover":{"event:news":{"offset":1,"epoch":%q}}}`, pos.Epoch))
	if f := tread(t, c); f.Type != "connected" {
		t.Fatalf("%+v", f)
	}
	if f := tread(t, c); f.Type != "recovered" || !f.Recovered {
		t.Fatalf("%+v", f)
	}
	for _, want := range []string{"2", "3"} {
		if f := tread(t, c); string(f.Message) != want {
			t.Fatalf("got %+v, want message %s", f, want)
		}
	}
	tpublish(t, h, `{"event":"news","message":4}`)
	if f := tread(t, c); string(f.Message) != "4" {
		t.Fatalf("message 3 delivered twice or 4 lost: %+v", f)
	}
}
