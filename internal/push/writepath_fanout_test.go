package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
)

// A publish to many subscribers at once writes them all together (on
// Linux, one io_uring batch; elsewhere, or with the ring off, one system
// call each). Small send buffers make many of those writes come up short
// in the middle of frames, and half the clients read nothing until the
// end: each still gets every frame whole and in order.

const (
	fanOutClients = 8
	fanOutFrames  = 40
)

// fanOutBody is larger than a loopback segment, so that a send can stop
// in the middle of one.
func fanOutBody(i int) string { return fmt.Sprintf("%04d-%s", i, strings.Repeat("y", 100000)) }

func forEachWritePath(t *testing.T, run func(t *testing.T)) {
	t.Run("together", func(t *testing.T) {
		before := ringSends.Load()
		run(t)
		if ok, _ := RingWrites(); ok && ringSends.Load() == before {
			t.Fatal("io_uring is available but no write went through a ring")
		}
	})
	t.Run("one call each", func(t *testing.T) {
		ringWritesOff.Store(true)
		defer ringWritesOff.Store(false)
		before := ringSends.Load()
		run(t)
		if ringSends.Load() != before {
			t.Fatal("a write went through a ring with the rings off")
		}
	})
}

func TestFanOutWebSocketWritesSurviveShortNonWaitingWrites(t *testing.T) {
	forEachWritePath(t, func(t *testing.T) {
		h, url := inlineWSHub(t, func(nc net.Conn) { smallSendBuffer(t, nc) })
		clients := make([]*websocket.Conn, fanOutClients)
		for i := range clients {
			clients[i] = tdial(t, url, `{"type":"connect","token":"u"}`)
			if f := tread(t, clients[i]); f.Type != "connected" {
				t.Fatalf("client %d: first frame %+v", i, f)
			}
		}
		checkFanOut(t, h, func(k int) error {
			c := clients[k]
			for i := range fanOutFrames {
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				_, data, err := c.ReadMessage()
				var f tframe
				if err == nil {
					err = json.Unmarshal(data, &f)
				}
				if err := checkFanOutFrame(i, f.Message, err); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

func TestFanOutHijackedSSEWritesSurviveShortNonWaitingWrites(t *testing.T) {
	forEachWritePath(t, func(t *testing.T) {
		h := inlineHub(t)
		returned := make(chan struct{}, fanOutClients)
		srv := httptest.NewUnstartedServer(sseTestHandler(h, returned))
		srv.Listener = smallBufferListener{srv.Listener}
		srv.Start()
		defer srv.Close()
		streams := make([]<-chan sseEv, fanOutClients)
		bodies := make([]io.Reader, fanOutClients)
		for i := range streams {
			nc, resp := sseSubscribe(t, srv.Listener.Addr().String())
			defer nc.Close()
			// The odd streams stop reading after the first event.
			bodies[i] = resp.Body
			n := -1
			if i%2 == 1 {
				n = 1
			}
			streams[i] = sseReaderN(resp.Body, n)
		}
		for i := range streams {
			if ev := <-streams[i]; ev.name != "connected" {
				t.Fatalf("stream %d: first event %+v", i, ev)
			}
			<-returned
		}
		if rawSocketSupported {
			waitFor(t, "publishes to write the streams themselves", func() bool { return h.liveInline() == fanOutClients })
		}
		checkFanOut(t, h, func(k int) error {
			events := streams[k]
			if k%2 == 1 {
				events = sseReader(bodies[k])
			}
			for i := range fanOutFrames {
				var ev sseEv
				select {
				case ev = <-events:
				case <-time.After(20 * time.Second):
					return fmt.Errorf("event %d: none within 20s", i)
				}
				var f tframe
				err := json.Unmarshal([]byte(ev.data), &f)
				if err := checkFanOutFrame(i, f.Message, err); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// checkFanOut runs check(k) for the even clients k while everything is
// published and for the odd ones once it is (they read nothing until
// then), and fails t with the first error.
func checkFanOut(t *testing.T, h *Hub, check func(k int) error) {
	t.Helper()
	errs := make(chan error, fanOutClients)
	var wg sync.WaitGroup
	run := func(k int) {
		wg.Go(func() {
			if err := check(k); err != nil {
				errs <- fmt.Errorf("client %d: %w", k, err)
			}
		})
	}
	for k := 0; k < fanOutClients; k += 2 {
		run(k)
	}
	publishFanOut(t, h)
	for k := 1; k < fanOutClients; k += 2 {
		run(k)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkFanOutFrame checks that message (read with err) is the i-th
// published.
func checkFanOutFrame(i int, message json.RawMessage, err error) error {
	var got string
	if err == nil {
		err = json.Unmarshal(message, &got)
	}
	if err != nil || got != fanOutBody(i) {
		return fmt.Errorf("message %d: %.40q (%v)", i, message, err)
	}
	return nil
}

func publishFanOut(t *testing.T, h *Hub) {
	t.Helper()
	for i := range fanOutFrames {
		body, _ := json.Marshal(map[string]any{"userId": "u", "message": fanOutBody(i)})
		if res := tpublish(t, h, string(body)); res.Delivered != fanOutClients {
			t.Fatalf("publish %d delivered to %d of %d", i, res.Delivered, fanOutClients)
		}
	}
}

// Subscribers that go while publishes write to them all together: the
// writes to a closed socket fail or are not made, the others go on, and
// every connection ends.
func TestFanOutWritesWhileSubscribersLeave(t *testing.T) {
	forEachWritePath(t, func(t *testing.T) {
		h, url := inlineWSHub(t, nil)
		stop := make(chan struct{})
		published := make(chan error)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					if n == 0 {
						err := errors.New("nothing was published")
						published <- err
						return
					}
					published <- nil
					return
				default:
				}
				p, err := ParsePublishBody(fmt.Appendf(nil, `{"userId":"u","message":%d}`, n))
				if err == nil {
					_, err = h.Publish(context.Background(), p)
				}
				if err != nil {
					published <- err
					return
				}
				n++
			}
		}()
		for round := range 5 {
			clients := make([]*websocket.Conn, 40)
			for i := range clients {
				clients[i] = tdial(t, url, `{"type":"connect","token":"u"}`)
			}
			for i, c := range clients {
				if i%3 == round%3 {
					_, _, _ = c.ReadMessage()
				}
				_ = c.Close()
			}
		}
		close(stop)
		if err := <-published; err != nil {
			t.Fatal(err)
		}
		waitFor(t, "every connection to end", func() bool {
			h.liveMu.Lock()
			defer h.liveMu.Unlock()
			return len(h.live) == 0 && h.reserved.Load() == 0
		})
	})
}

// Every message written is counted once (caddyws_push_written_total),
// whichever path wrote it: small frames to readers that keep up go
// almost all through the publishes' own writes.
func TestFanOutWritesAreCountedOnce(t *testing.T) {
	forEachWritePath(t, func(t *testing.T) {
		h, url := inlineWSHub(t, nil)
		const clients, messages = 10, 50
		var wg sync.WaitGroup
		for range clients {
			c := tdial(t, url, `{"type":"connect","token":"u"}`)
			if f := tread(t, c); f.Type != "connected" {
				t.Fatalf("first frame %+v", f)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range messages {
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, _, err := c.ReadMessage(); err != nil {
						return
					}
				}
			}()
		}
		for i := range messages {
			if res := tpublish(t, h, fmt.Sprintf(`{"userId":"u","message":%d}`, i)); res.Delivered != clients {
				t.Fatalf("publish %d delivered to %d", i, res.Delivered)
			}
		}
		wg.Wait()
		var m dto.Metric
		if err := h.metrics.Written.Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != clients*messages {
			t.Fatalf("written_total %v, want %d", got, clients*messages)
		}
	})
}
