package push

import (
	"context"
	"fmt"
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

// heldBroker is a memory broker whose Publish stores the message at once
// (the position is assigned in arrival order) and then holds the call until
// the test releases it: a broker call that stalls, as during a failover.
type heldBroker struct {
	*memory.Broker
	entered chan chan struct{} // one per call, after storing; close it to return
}

func (b *heldBroker) Publish(ctx context.Context, s string, data []byte) (broker.Position, error) {
	pos, err := b.Broker.Publish(ctx, s, data)
	release := make(chan struct{})
	b.entered <- release
	<-release
	return pos, err
}

func heldHub(t *testing.T, hist broker.History) (*Hub, *heldBroker, string) {
	t.Helper()
	hb := &heldBroker{Broker: memory.New(hist, nil), entered: make(chan chan struct{}, 64)}
	h, err := New(Options{Name: "o", History: hist, QueueSize: 100}, hb, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.Reserve(TransportWebSocket)
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			h.Release()
			return
		}
		go h.Serve(ws, ConnOptions{Verifier: auth.TokenIsUser{}, MaxFrameSize: 4096, AuthTimeout: time.Second, VerifyTimeout: time.Second})
	}))
	t.Cleanup(func() { srv.Close(); h.Close() })
	return h, hb, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// enteredCall waits for the next publish to be inside the broker call.
func enteredCall(t *testing.T, hb *heldBroker, what string) chan struct{} {
	t.Helper()
	select {
	case r := <-hb.entered:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("%s never reached the broker while an earlier publish was held there", what)
		return nil
	}
}

func goPublish(h *Hub, body string, out chan<- error) {
	p, err := ParsePublishBody([]byte(body))
	if err != nil {
		out <- err
		return
	}
	go func() {
		_, err := h.Publish(context.Background(), p)
		out <- err
	}()
}

// TestStalledBrokerCallDoesNotHoldBackOtherPublishes: while one publish is
// held in the broker, publishes to other streams and to the same stream
// reach the broker and (other streams) complete.
func TestStalledBrokerCallDoesNotHoldBackOtherPublishes(t *testing.T) {
	h, hb, _ := heldHub(t, broker.History{Size: 10})
	results := make(chan error, 100)
	goPublish(h, `{"userId":"stuck","message":0}`, results)
	stuck := enteredCall(t, hb, "the first publish")
	// Every other user: with per-stripe serialisation some share the
	// stuck stream's stripe.
	for i := 0; i < 70; i++ {
		goPublish(h, fmt.Sprintf(`{"userId":"u%d","message":%d}`, i, i), results)
		close(enteredCall(t, hb, fmt.Sprintf("a publish to user u%d", i)))
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	goPublish(h, `{"userId":"stuck","message":1}`, results)
	second := enteredCall(t, hb, "a second publish to the stuck stream")
	close(stuck)
	close(second)
	for i := 0; i < 2; i++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
}

// TestLocalDeliveryKeepsBrokerOrder: publishes to one stream whose broker
// calls return in the reverse of the order the broker stored them reach the
// local subscriber in offset order, each once.
func TestLocalDeliveryKeepsBrokerOrder(t *testing.T) {
	h, hb, url := heldHub(t, broker.History{Size: 10})
	c := tdial(t, url, `{"type":"connect","token":"alice"}`)
	if f := tread(t, c); f.Type != "connected" {
		t.Fatalf("got %+v", f)
	}
	const n = 5
	results := make(chan error, n)
	var held []chan struct{}
	for i := 0; i < n; i++ {
		goPublish(h, fmt.Sprintf(`{"userId":"alice","message":%d}`, i), results)
		held = append(held, enteredCall(t, hb, fmt.Sprintf("publish %d", i)))
	}
	for i := n - 1; i >= 0; i-- {
		close(held[i])
		if i > 0 {
			time.Sleep(20 * time.Millisecond) // let it return first
		}
	}
	for i := 0; i < n; i++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		f := tread(t, c)
		if f.Type != "message" || f.Offset != uint64(i+1) || string(f.Message) != fmt.Sprint(i) {
			t.Fatalf("frame %d: got %+v, want message %d at offset %d", i, f, i, i+1)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, b, err := c.ReadMessage(); err == nil {
		t.Fatalf("unexpected extra frame %s", b)
	}
}

// TestRetryRacingItsFirstAttemptIsNotPublishedTwice: a publish with the id
// of one held in the broker waits for it and is then a duplicate.
func TestRetryRacingItsFirstAttemptIsNotPublishedTwice(t *testing.T) {
	h, hb, _ := heldHub(t, broker.History{Size: 10})
	var wg sync.WaitGroup
	var res [2]PublishResult
	var errs [2]error
	first := make(chan struct{})
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i == 1 {
				<-first
			}
			res[i], errs[i] = h.Publish(context.Background(), PublishRequest{ID: "m1", UserID: "bob", Message: []byte(`1`)})
		}(i)
	}
	r := enteredCall(t, hb, "the first attempt")
	close(first)
	time.Sleep(50 * time.Millisecond) // the retry is waiting, not in the broker
	select {
	case r2 := <-hb.entered:
		close(r2)
		close(r)
		t.Fatal("the retry reached the broker while its first attempt was in progress")
	default:
	}
	close(r)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if res[0].Duplicates+res[1].Duplicates != 1 {
		t.Fatalf("want exactly one duplicate, got %+v", res)
	}
}
