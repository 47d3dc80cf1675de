package push

import (
	"fmt"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/caddyws/caddyws/broker"
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
