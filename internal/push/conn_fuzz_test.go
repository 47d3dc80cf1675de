package push

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// fuzzBudget is the outbound budget of the fuzzed hub: small, so that a
// few frames reach it.
const (
	fuzzQueueSize  = 16
	fuzzQueueBytes = 4096
	// A close frame is queued past the budget, and a coalesced pong may
	// take a longer payload than the one it replaces.
	fuzzSlack = 256
)

// FuzzClientFrames feeds a sequence of client frames (connect, subscribe,
// unsubscribe, recover, ping, garbage, oversized, binary) interleaved with
// publishes, to a live hub over a real WebSocket whose client never reads.
// Invariants: no panic; the bytes queued for any connection stay within the
// budget; once the client is gone the hub holds no connection and no
// goroutine of it is left.
func FuzzClientFrames(f *testing.F) {
	opts := Options{Name: "fuzz", QueueSize: fuzzQueueSize, QueueBytes: fuzzQueueBytes,
		History: broker.History{Size: 50}, PingInterval: 200 * time.Millisecond}
	h, url := serveTestHub(f, opts, ConnOptions{Verifier: auth.TokenIsUser{}, MaxFrameSize: 4096, MaxEvents: 4,
		AuthTimeout: 500 * time.Millisecond, VerifyTimeout: time.Second})
	base := runtime.NumGoroutine()

	f.Add([]byte{0, 1, 1, 2, 7, 0, 7, 1, 1, 3, 3, 3, 3, 2, 1})
	f.Add([]byte{1, 0, 0, 1})
	f.Add([]byte{3, 0, 3, 0, 3, 0, 0, 2})
	f.Add([]byte{0, 0, 5, 0})
	f.Add([]byte{0, 4, 4, 9})
	f.Add([]byte{0, 1, 7, 1, 7, 1, 7, 1, 1, 255, 1, 255, 1, 255, 1, 255})

	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 400 {
			prog = prog[:400]
		}
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		epoch := ""
		for i := 0; i+1 < len(prog); i += 2 {
			op, arg := prog[i]%8, prog[i+1]
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			switch op {
			case 0:
				err = c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"token":"u%d","events":["e%d"]}`, arg%3, arg%5)))
			case 1:
				rec, _ := json.Marshal(map[string]Position{[]string{"all", "event:e1", "user:u0", "bogus"}[arg%4]: {Offset: uint64(arg % 8), Epoch: epoch}})
				err = c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"subscribe","events":["e%d"],"recover":%s}`, arg%5, rec)))
			case 2:
				err = c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"unsubscribe","events":["e%d"]}`, arg%5)))
			case 3:
				err = c.WriteControl(websocket.PingMessage, []byte(strings.Repeat("p", int(arg%126))), time.Now().Add(time.Second))
			case 4:
				err = c.WriteMessage(websocket.TextMessage, prog[i:])
			case 5:
				err = c.WriteMessage(websocket.TextMessage, make([]byte, 4097+int(arg)))
			case 6:
				err = c.WriteMessage(websocket.BinaryMessage, []byte{arg})
			case 7:
				res, perr := h.Publish(context.Background(), PublishRequest{Broadcast: arg%2 == 0, Event: fmt.Sprintf("e%d", arg%5),
					Message: json.RawMessage(`"` + strings.Repeat("m", int(arg)*4) + `"`)})
				_ = res
				if perr != nil {
					t.Fatalf("publish: %v", perr)
				}
				if epoch == "" {
					if m, _, serr := h.broker.Since(context.Background(), streamAll, Position{}, 1); serr == nil && len(m) > 0 {
						epoch = m[0].Position.Epoch
					}
				}
			}
			checkBudget(t, h)
			if err != nil {
				break // the server closed the connection
			}
		}
		_ = c.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			h.liveMu.Lock()
			n := len(h.live)
			h.liveMu.Unlock()
			g := runtime.NumGoroutine()
			if n == 0 && g <= base+4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after close: %d connections live, %d goroutines (base %d)", n, g, base)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// checkBudget fails when a connection holds more than its outbound budget.
func checkBudget(t *testing.T, h *Hub) {
	h.liveMu.Lock()
	defer h.liveMu.Unlock()
	for c := range h.live {
		c.mu.Lock()
		q, frames := c.queued, len(c.queue)+len(c.pending)
		c.mu.Unlock()
		if q > fuzzQueueBytes+fuzzSlack || frames > fuzzQueueSize+1 {
			t.Fatalf("connection holds %d bytes in %d frames, budget %d bytes %d frames", q, frames, fuzzQueueBytes, fuzzQueueSize)
		}
	}
}
