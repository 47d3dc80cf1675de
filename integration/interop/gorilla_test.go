package interop

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frameSizes covers the length-encoding edges of RFC 6455 (125/126/127,
// 65535/65536), empty frames, and a random spread up to 256 KiB.
func frameSizes(seed uint64) func(i int) int {
	edges := []int{1, 0, 2, 125, 126, 127, 128, 65535, 65536, 65537, 7, 1000, 4096, 16384, 262144, 3}
	r := rand.New(rand.NewPCG(seed, 3))
	return func(i int) int {
		if i < len(edges) {
			return edges[i]
		}
		if r.IntN(8) == 0 {
			return r.IntN(256 << 10)
		}
		return 1 + r.IntN(4096)
	}
}

func dialWS(url string, protocols []string, writeBuf int) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: protocols, WriteBufferSize: writeBuf}
	return d.Dial(url, nil)
}

// echo sends data as binary messages of mixed sizes while another goroutine
// reads the echo, and checks the echo byte for byte. With pings, control
// frames are interleaved too (between fragments of a message when the write
// buffer is small, which gorilla then splits into continuation frames).
func echo(t *testing.T, c *websocket.Conn, data []byte, sizes func(int) int, pings bool) {
	t.Helper()
	echoAs(t, c, websocket.BinaryMessage, data, sizes, pings)
}

// echoAs is echo with messages of type typ going out; the echo always
// comes back in binary frames.
func echoAs(t *testing.T, c *websocket.Conn, typ int, data []byte, sizes func(int) int, pings bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	_ = c.SetReadDeadline(deadline)
	_ = c.SetWriteDeadline(deadline)
	got := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		var buf bytes.Buffer
		for buf.Len() < len(data) {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				readErr <- fmt.Errorf("after %d of %d bytes: %w", buf.Len(), len(data), err)
				return
			}
			if typ != websocket.BinaryMessage {
				readErr <- fmt.Errorf("got a message of type %d, want binary", typ)
				return
			}
			buf.Write(msg)
		}
		got <- buf.Bytes()
	}()
	stopPings := make(chan struct{})
	var wg sync.WaitGroup
	if pings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopPings:
					return
				case <-time.After(time.Millisecond):
					_ = c.WriteControl(websocket.PingMessage, []byte("p"), deadline)
				}
			}
		}()
	}
	for i, off := 0, 0; off < len(data); i++ {
		n := min(sizes(i), len(data)-off)
		if err := c.WriteMessage(typ, data[off:off+n]); err != nil {
			t.Fatalf("writing message %d (%d bytes at %d): %v", i, n, off, err)
		}
		off += n
	}
	close(stopPings)
	wg.Wait()
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			i := 0
			for i < len(b) && b[i] == data[i] {
				i++
			}
			t.Fatalf("echo differs from the input at byte %d of %d", i, len(data))
		}
	case err := <-readErr:
		t.Fatalf("reading the echo: %v", err)
	}
}

// closeAndExpect sends a 1000 close frame and expects the peer's close
// frame in answer.
func closeAndExpect(t *testing.T, c *websocket.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), deadline); err != nil {
		t.Fatalf("sending close: %v", err)
	}
	_ = c.SetReadDeadline(deadline)
	for {
		_, _, err := c.NextReader()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != 1000 {
				t.Errorf("peer answered our close with %d %q, want 1000", ce.Code, ce.Text)
			}
			return
		}
		if err != nil {
			t.Fatalf("waiting for the close answer: %v", err)
		}
	}
}

func TestEchoIsByteExactWithMixedFrameSizes(t *testing.T) {
	data := randomBytes(1, 6<<20)
	forEachPeer(t, func(t *testing.T, p *peer) {
		for _, mode := range []struct {
			name     string
			writeBuf int
			pings    bool
		}{
			{"one frame per message", 300 << 10, false},
			{"fragmented with pings between fragments", 1000, true},
		} {
			t.Run(mode.name, func(t *testing.T) {
				c, resp, err := dialWS(p.echoURL, []string{"binary"}, mode.writeBuf)
				if err != nil {
					t.Fatalf("handshake: %v (response %v)", err, resp)
				}
				defer c.Close()
				if c.Subprotocol() != "binary" {
					t.Errorf("negotiated subprotocol %q, want binary", c.Subprotocol())
				}
				echo(t, c, data, frameSizes(2), mode.pings)
				closeAndExpect(t, c)
				if end, ok := fx.echo.waitEnd(int64(len(data)), 10*time.Second); !ok || !end.eof {
					t.Errorf("upstream did not see a clean EOF after exactly %d bytes (found %v, %+v)", len(data), ok, end)
				}
			})
		}
	})
}

func TestSubprotocolNegotiation(t *testing.T) {
	data := randomBytes(3, 200<<10)
	forEachPeer(t, func(t *testing.T, p *peer) {
		for _, tc := range []struct {
			name    string
			offer   []string
			status  int    // 101, or the refusal
			chosen  string // when 101
			dataset bool
		}{
			{"binary offered", []string{"binary"}, 101, "binary", true},
			{"none offered", nil, 101, "", true},
			{"binary and base64 offered", []string{"binary", "base64"}, 101, "binary", true},
			// websockify splits the header on "," without trimming, so it
			// sees " binary" and refuses; a list is ", "-separated by
			// RFC 6455, and we must pick binary wherever it is.
			{"base64 and binary offered", []string{"base64", "binary"}, p.base64FirstStatus, "binary", true},
			{"only base64 offered", []string{"base64"}, 400, "", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, resp, err := dialWS(p.echoURL, tc.offer, 0)
				status := 0
				if resp != nil {
					status = resp.StatusCode
				}
				if status != tc.status {
					t.Fatalf("handshake status %d (err %v), want %d", status, err, tc.status)
				}
				if tc.status != 101 {
					if c != nil {
						c.Close()
					}
					return
				}
				defer c.Close()
				if c.Subprotocol() != tc.chosen {
					t.Errorf("negotiated %q, want %q", c.Subprotocol(), tc.chosen)
				}
				echo(t, c, data, frameSizes(4), false)
				closeAndExpect(t, c)
			})
		}
	})
}

func TestUpstreamEOFDeliversEverythingThenCloses1000(t *testing.T) {
	forEachPeer(t, func(t *testing.T, p *peer) {
		c, _, err := dialWS(p.eofURL, []string{"binary"}, 0)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var got bytes.Buffer
		for {
			typ, msg, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if ce.Code != 1000 {
					t.Errorf("close code %d %q, want 1000", ce.Code, ce.Text)
				}
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", got.Len(), err)
			}
			if typ != websocket.BinaryMessage {
				t.Fatalf("message type %d, want binary", typ)
			}
			got.Write(msg)
		}
		if !bytes.Equal(got.Bytes(), eofPayload) {
			t.Fatalf("got %d bytes, want the upstream's %d bytes exactly", got.Len(), len(eofPayload))
		}
	})
}

func TestDeadUpstreamClosesWithDocumentedCode(t *testing.T) {
	forEachPeer(t, func(t *testing.T, p *peer) {
		start := time.Now()
		c, resp, err := dialWS(p.deadURL, []string{"binary"}, 0)
		if err != nil {
			t.Fatalf("handshake: %v (response %v); want an upgrade then a close frame", err, resp)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _, err = c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want a close frame, got %v", err)
		}
		if !slices.Contains(p.deadCodes, ce.Code) {
			t.Errorf("close code %d %q, want one of %v", ce.Code, ce.Text, p.deadCodes)
		}
		if ce.Text == "" {
			t.Errorf("close code %d has no reason", ce.Code)
		}
		t.Logf("%s: dead upstream -> %d %q after %s", p.name, ce.Code, ce.Text, time.Since(start).Round(time.Millisecond))
	})
}

// Text frames: ours forwards their bytes (docs/tunnel.md), so a terminal
// client that sends text works, and the way back is binary. websockify 0.10
// refuses them with 1003 "Text frames are not supported"; the reference
// case pins that, so a change on either side is noticed.
func TestTextFrames(t *testing.T) {
	data := make([]byte, 300<<10)
	for i, b := range randomBytes(6, len(data)) {
		data[i] = ' ' + b%95 // printable ASCII: valid UTF-8 however it is cut
	}
	forEachPeer(t, func(t *testing.T, p *peer) {
		c, _, err := dialWS(p.echoURL, []string{"binary"}, 0)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		if p.textCloseCode == 0 {
			echoAs(t, c, websocket.TextMessage, data, frameSizes(7), false)
			closeAndExpect(t, c)
			return
		}
		if err := c.WriteMessage(websocket.TextMessage, data[:100]); err != nil {
			t.Fatalf("writing a text frame: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err = c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != p.textCloseCode {
			t.Fatalf("got %v, want close code %d", err, p.textCloseCode)
		}
	})
}
