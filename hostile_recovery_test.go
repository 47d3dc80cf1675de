package caddyws

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// pagedSites keeps a large broadcast history (recoveryMessages messages of
// recoveryBody bytes, 32 MiB) with the default outbound budget (256 frames,
// 4 MiB); @BROKER@ is the broker line.
const pagedSites = `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub paged
		auth token_is_user
		history 2000
		@BROKER@
	}
	websocket_push /push {
		hub paged
		publish_key s3cret
		@BROKER@
	}
}`

const (
	recoveryMessages = 2000
	recoveryBody     = 16 << 10
)

// TestPushRecoveryOfLargeHistoryIsPaged: a client asks to recover a 32 MiB
// history (2000 x 16 KiB) and does not read. Caddy reads the history from
// the broker a page at a time and only as the client takes it, so its heap
// grows by less than 8 MiB while the connection waits (not by the history,
// once as the broker's reply and once as frames). When the client starts
// reading it gets every message once, in order, with no 4029 although the
// history is eight times its outbound budget. On the memory broker and on a
// real redis-server.
func TestPushRecoveryOfLargeHistoryIsPaged(t *testing.T) {
	for _, b := range []string{"memory", "redis"} {
		t.Run(b, func(t *testing.T) {
			line := ""
			if b == "redis" {
				line = "broker redis redis://" + startRedis(t)
			}
			tc, _ := pushCaddy(t, strings.ReplaceAll(pagedSites, "@BROKER@", line))
			pad := strings.Repeat("x", recoveryBody)
			for i := 1; i <= recoveryMessages; i++ {
				mustPublish(t, tc.URL("/push"), "s3cret", fmt.Sprintf(`{"broadcast":true,"message":"%d:%s"}`, i, pad))
			}

			c := dialPush(t, tc.WSURL("/ws"), nil)
			before := heapInuse()
			sendJSON(t, c, `{"token":"slow","recover":{"all":{"offset":0,"epoch":""}}}`)
			time.Sleep(2 * time.Second) // not reading: the replay waits for room
			after := heapInuse()
			growth := int64(after) - int64(before)
			t.Logf("heap in use before %d KiB, while the replay waits %d KiB, growth %d KiB (history %d KiB)",
				before>>10, after>>10, growth>>10, recoveryMessages*recoveryBody>>10)
			if growth > 8<<20 {
				t.Errorf("heap grew by %d MiB while a client did not read its recovery, want < 8 MiB", growth>>20)
			}

			expectType(t, c, "connected")
			if f := expectType(t, c, "recovered"); !f.Recovered || f.Offset != recoveryMessages {
				t.Fatalf("recovered frame %+v, want recovered at offset %d", f, recoveryMessages)
			}
			for i := 1; i <= recoveryMessages; i++ {
				f, err := tryReadFrame(c, 10*time.Second)
				if err != nil {
					t.Fatalf("reading replayed message %d of %d: %v", i, recoveryMessages, err)
				}
				want := fmt.Sprintf(`"%d:`, i)
				if f.Type != "message" || f.Offset != uint64(i) || !strings.HasPrefix(string(f.Message), want) {
					head := f.Message
					if len(head) > 16 {
						head = head[:16]
					}
					t.Fatalf("replayed frame %d: type %q offset %d message %s..., want message %d in order", i, f.Type, f.Offset, head, i)
				}
			}
			mustPublish(t, tc.URL("/push"), "s3cret", `{"broadcast":true,"message":"live"}`)
			if f := expectType(t, c, "message"); string(f.Message) != `"live"` || f.Offset != recoveryMessages+1 {
				t.Fatalf("after the replay got %+v, want the live message once", f)
			}
		})
	}
}
