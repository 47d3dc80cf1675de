//go:build linux

package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestEngineRelayFlushesWhenAControlFrameTrailsTheData: the relay mode must
// run the relay production runs. A data frame and a ping in one TCP segment
// must be echoed at once, not held back until the client sends again (a
// Session without its read hook does that).
func TestEngineRelayFlushesWhenAControlFrameTrailsTheData(t *testing.T) {
	for _, dialEarly := range []bool{false, true} {
		rs := &relayServer{upstream: startTCPEcho(t, false), bufSize: 64 << 10, dialEarly: dialEarly,
			upgrader: websocket.Upgrader{WriteBufferPool: &sync.Pool{}, CheckOrigin: func(*http.Request) bool { return true }}}
		srv := httptest.NewServer(rs)
		t.Cleanup(srv.Close)
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		payload := []byte("0123456789")
		// Masked frames with an all-zero key, so the payload stays as it is.
		raw := append([]byte{0x82, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
		raw = append(raw, 0x89, 0x80, 0, 0, 0, 0) // ping, empty
		if _, err := ws.NetConn().Write(raw); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, p, err := ws.ReadMessage(); err != nil || string(p) != string(payload) {
			t.Fatalf("dial-early %v: echo read %q, %v; want %q", dialEarly, p, err, payload)
		}
	}
}
