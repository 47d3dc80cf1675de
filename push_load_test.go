package caddyws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sub is a subscriber of the load tests: a reader goroutine records the
// numbers of the messages it receives, in order, and how it ended.
type sub struct {
	c    *websocket.Conn
	user string
	evs  []string
	mu   sync.Mutex
	got  []int
	err  error
	done chan struct{}
}

func (s *sub) read() {
	defer close(s.done)
	for {
		_ = s.c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, b, err := s.c.ReadMessage()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		// Scanned, not decoded: 1000 readers decoding JSON under -race
		// would dominate the test's time.
		if !bytes.HasPrefix(b, []byte(`{"type":"message"`)) {
			continue
		}
		n := -1 // not a numbered message
		if i := bytes.Index(b, []byte(`,"message":`)); i >= 0 {
			rest := b[i+len(`,"message":`):]
			if j := bytes.IndexAny(rest, ",}"); j > 0 {
				if v, err := strconv.Atoi(string(rest[:j])); err == nil {
					n = v
				}
			}
		}
		s.mu.Lock()
		s.got = append(s.got, n)
		s.mu.Unlock()
	}
}

func (s *sub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// openSubs connects n subscribers: user u<i%users>, events from the spread.
func openSubs(t *testing.T, url string, n, users int, events func(i int) []string) []*sub {
	t.Helper()
	subs := make([]*sub, n)
	for i := range subs {
		c := dialPush(t, url, nil)
		s := &sub{c: c, user: fmt.Sprint("u", i%users), evs: events(i), done: make(chan struct{})}
		b, _ := json.Marshal(map[string]any{"type": "connect", "token": s.user, "events": s.evs})
		sendJSON(t, c, string(b))
		if f := expectType(t, c, "connected"); f.User != s.user {
			t.Fatalf("connected %+v", f)
		}
		go s.read()
		subs[i] = s
	}
	return subs
}

func closeSubs(subs []*sub) {
	for _, s := range subs {
		s.c.Close()
	}
	for _, s := range subs {
		<-s.done
	}
}

// TestPushFanOutCorrectness: 1000 subscribers over 100 users and 20
// events, 10 000 messages of every addressing kind; every connection gets
// exactly the messages its subscriptions match, in publish order.
func TestPushFanOutCorrectness(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED under -short: TestPushFanOutCorrectness is long (1000 subscribers, 10000 publishes); run without -short")
	}
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub fan
		auth token_is_user
		queue_size 20000
		write_timeout 60s
	}
	websocket_push /push {
		hub fan
		publish_key k
	}
}`)
	const nSubs, nUsers, nEvents, nMsgs = 1000, 100, 20, 10000
	subs := openSubs(t, tc.WSURL("/ws"), nSubs, nUsers, func(i int) []string {
		return []string{fmt.Sprint("e", i%nEvents), fmt.Sprint("e", (i*7+3)%nEvents)}
	})
	defer closeSubs(subs)
	want := make([][]int, nSubs)
	has := func(s *sub, e string) bool {
		for _, x := range s.evs {
			if x == e {
				return true
			}
		}
		return false
	}
	rnd := rand.New(rand.NewSource(1))
	for m := 0; m < nMsgs; m++ {
		var body string
		match := func(*sub) bool { return false }
		u := fmt.Sprint("u", rnd.Intn(nUsers+5)) // a few users nobody is
		e := fmt.Sprint("e", rnd.Intn(nEvents))
		switch k := rnd.Intn(100); {
		case k < 30:
			body = fmt.Sprintf(`{"userId":%q,"message":%d}`, u, m)
			match = func(s *sub) bool { return s.user == u }
		case k < 60:
			body = fmt.Sprintf(`{"event":%q,"message":%d}`, e, m)
			match = func(s *sub) bool { return has(s, e) }
		case k < 85:
			body = fmt.Sprintf(`{"userId":%q,"event":%q,"message":%d}`, u, e, m)
			match = func(s *sub) bool { return s.user == u && has(s, e) }
		case k < 98:
			us := []string{u, fmt.Sprint("u", rnd.Intn(nUsers)), fmt.Sprint("u", rnd.Intn(nUsers))}
			b, _ := json.Marshal(map[string]any{"userIds": us, "message": m})
			body = string(b)
			match = func(s *sub) bool { return s.user == us[0] || s.user == us[1] || s.user == us[2] }
		default:
			body = fmt.Sprintf(`{"broadcast":true,"message":%d}`, m)
			match = func(*sub) bool { return true }
		}
		n := 0
		for i, s := range subs {
			if match(s) {
				want[i] = append(want[i], m)
				n++
			}
		}
		if got := mustPublish(t, tc.URL("/push"), "k", body); got != n {
			t.Fatalf("message %d (%s): delivered %d, want %d", m, body, got, n)
		}
	}
	total := 0
	for i, s := range subs {
		total += len(want[i])
		deadline := time.Now().Add(60 * time.Second)
		for s.count() < len(want[i]) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // anything extra would show now
	for i, s := range subs {
		s.mu.Lock()
		got, err := append([]int(nil), s.got...), s.err
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("subscriber %d ended: %v", i, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Fatalf("subscriber %d (%s %v): got %d messages, want %d; first difference at %d",
				i, s.user, s.evs, len(got), len(want[i]), firstDiff(got, want[i]))
		}
	}
	t.Logf("%d deliveries checked", total)
}

func firstDiff(a, b []int) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// TestPushStalledClient: a client that stops reading does not hold up the
// publisher or the others, and is closed with 4029 (seen once it reads
// again).
func TestPushStalledClient(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub stall
		auth token_is_user
		queue_size 16
		write_timeout 2m
	}
	websocket_push /push {
		hub stall
		publish_key k
	}
}`)
	// A tiny receive buffer so the server's writes to it block soon.
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDial: func(network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error { return setRecvBuffer(rc, 4096) }}
		return nd.Dial(network, addr)
	}}
	stalled, _, err := d.Dial(tc.WSURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	sendJSON(t, stalled, `{"token":"slow","event":"feed"}`)
	expectType(t, stalled, "connected")
	others := openSubs(t, tc.WSURL("/ws"), 3, 3, func(int) []string { return []string{"feed"} })
	defer closeSubs(others)

	payload := strings.Repeat("x", 32<<10)
	// 200 x 32 KiB = 6.4 MiB: more than the kernel buffers on both sides
	// (tcp_wmem's 4 MiB ceiling + a 4 KiB receive buffer) and the queue.
	const n = 200
	var slowest time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		st, b := postPush(t, tc.URL("/push"), "k", fmt.Sprintf(`{"event":"feed","message":{"n":%d,"pad":%q}}`, i, payload))
		if st != 200 {
			t.Fatalf("publish %d: %d %s", i, st, b)
		}
		if d := time.Since(start); d > slowest {
			slowest = d
		}
	}
	// A publisher held up by the stalled client would wait for the write
	// timeout (2m); CPU contention under -race stays far below that.
	if slowest > 5*time.Second {
		t.Fatalf("a publish took %v with a stalled subscriber", slowest)
	}
	for i, s := range others {
		deadline := time.Now().Add(30 * time.Second)
		for s.count() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if s.count() < n {
			t.Fatalf("subscriber %d got %d of %d while another was stalled (err %v)", i, s.count(), n, s.err)
		}
	}
	// The stalled one was removed from the hub at once...
	st, b := tc.Admin("GET", "/websocket_push/presence?user=slow", nil)
	if st != 200 || !strings.Contains(string(b), `"online":false`) {
		t.Fatalf("stalled user still present: %d %s", st, b)
	}
	// ...and reads, after what was in flight, the slow close code.
	expectClose(t, stalled, 4029, 15*time.Second)
	t.Logf("slowest publish with a stalled subscriber: %v", slowest)
}
