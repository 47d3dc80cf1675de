package push

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// TestOneRecoveryInFlight: two recovery requests sent back to back are
// served one after the other: the second request's acknowledgement comes
// after every frame of the first replay, never interleaved with it.
func TestOneRecoveryInFlight(t *testing.T) {
	h, url := newTestHub(t, Options{Name: "r", History: broker.History{Size: 50}, QueueSize: 1000})
	a := tdial(t, url, `{"type":"connect","token":"alice","events":["news"]}`)
	if f := tread(t, a); f.Type != "connected" {
		t.Fatalf("%+v", f)
	}
	var first tframe
	for i := 1; i <= 20; i++ {
		tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
		if f := tread(t, a); i == 1 {
			first = f
		}
	}
	req := fmt.Sprintf(`{"type":"subscribe","events":["news"],"recover":{"event:news":{"offset":0,"epoch":%q}}}`, first.Epoch)
	for range 2 {
		if err := a.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for len(got) < 2*(1+1+20) {
		f := tread(t, a)
		got = append(got, f.Type)
	}
	// Each request: "subscribed", "recovered", then the 20 replayed messages.
	for r := 0; r < 2; r++ {
		part := got[r*22 : (r+1)*22]
		if part[0] != "subscribed" || part[1] != "recovered" {
			t.Fatalf("request %d answered %v", r, part[:2])
		}
		for _, typ := range part[2:] {
			if typ != "message" {
				t.Fatalf("request %d: replay interleaved with %q: %v", r, typ, got)
			}
		}
	}
}

// TestReplayEvictedBetweenPagesCloses4029: history evicted past a replay
// between two pages (the client reads slower than the stream evicts) ends
// the connection with 4029 after what was replayed, never with a silent
// gap: the recovered frame already promised the whole gap.
func TestReplayEvictedBetweenPagesCloses4029(t *testing.T) {
	hist := broker.History{Size: 10}
	hb := &hookSince{Broker: memory.New(hist, nil)}
	h, url := serveTestHubOn(t, Options{Name: "e", History: hist}, ConnOptions{Verifier: auth.TokenIsUser{},
		MaxFrameSize: 4096, AuthTimeout: time.Second, VerifyTimeout: time.Second}, hb)
	for i := 1; i <= 10; i++ {
		tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
	}
	calls := 0
	hb.hook = func() {
		if calls++; calls == 2 { // before the second page: evict it all
			for i := 11; i <= 20; i++ {
				tpublish(t, h, fmt.Sprintf(`{"event":"news","message":%d}`, i))
			}
		}
	}
	c := tdial(t, url, `{"type":"connect","token":"a","events":["news"],"recover":{"event:news":{"offset":0,"epoch":""}}}`)
	if f := tread(t, c); f.Type != "connected" {
		t.Fatalf("%+v", f)
	}
	if f := tread(t, c); f.Type != "recovered" || !f.Recovered || f.Offset != 10 {
		t.Fatalf("%+v, want recovered at offset 10", f)
	}
	for i := 1; i <= firstReplayPage; i++ {
		if f := tread(t, c); f.Type != "message" || string(f.Message) != fmt.Sprint(i) {
			t.Fatalf("replayed %+v, want message %d", f, i)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseSlow || ce.Text != "history evicted during the replay" {
		t.Fatalf("after the first page got %s, %v: want close 4029 \"history evicted during the replay\"", b, err)
	}
}
