package caddyws

import (
	"bytes"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
)

func TestTunnelRelays16MiBEachWayByteExact(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /tunnel `+tcpEcho(t)+`
}`)
	c := mustTunnel(t, tc.WSURL("/tunnel"), nil)
	data := make([]byte, 16<<20)
	_, _ = rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for buf.Len() < len(data) {
			_, p, err := c.ReadMessage()
			if err != nil {
				t.Errorf("read after %d bytes: %v", buf.Len(), err)
				break
			}
			buf.Write(p)
		}
		got <- buf.Bytes()
	}()
	sizes := []int{1, 13, 512, 1024, 4000, 16384, 65536, 100000, 1 << 20}
	for off := 0; off < len(data); {
		n := min(len(data)-off, sizes[mrand.IntN(len(sizes))])
		mt := websocket.BinaryMessage
		if mrand.IntN(5) == 0 {
			mt = websocket.TextMessage // forwarded as bytes too
		}
		w, err := c.NextWriter(mt)
		if err != nil {
			t.Fatal(err)
		}
		for p := data[off : off+n]; len(p) > 0; { // fragmented messages
			k := min(len(p), 1+mrand.IntN(70000))
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if g := <-got; !bytes.Equal(g, data) {
		t.Fatalf("echo of 16 MiB differs (got %d bytes)", len(g))
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	expectTunnelClose(t, c, 1000, 5*time.Second)
}

func TestTunnelPassesOtherRequestsToNext(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+tcpEcho(t)+`
	respond "the page"
}`)
	resp, err := http.Get(tc.URL("/vnc.html"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := new(bytes.Buffer)
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 || buf.String() != "the page" {
		t.Fatalf("plain GET: %d %q", resp.StatusCode, buf.String())
	}
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/websockify"), nil), "hi")
}

func TestTunnelNegotiatesSubprotocolsLikeWebsockify(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+tcpEcho(t)+`
}`)
	for _, tt := range []struct {
		offer  string
		status int
		chosen string
	}{
		{"", 101, ""},
		{"binary", 101, "binary"},
		{"base64, binary", 101, "binary"},
		{"base64", 400, ""},
		{"chat", 400, ""},
	} {
		hdr := http.Header{}
		if tt.offer != "" {
			hdr.Set("Sec-WebSocket-Protocol", tt.offer)
		}
		c, status, msg := wsDial(t, tc.WSURL("/"), hdr)
		if status != tt.status {
			t.Fatalf("offer %q: status %d (%s), want %d", tt.offer, status, msg, tt.status)
		}
		if c == nil {
			if !strings.Contains(msg, "subprotocol") {
				t.Fatalf("offer %q: error %q does not name the subprotocol", tt.offer, msg)
			}
			continue
		}
		if c.Subprotocol() != tt.chosen {
			t.Fatalf("offer %q: chose %q, want %q", tt.offer, c.Subprotocol(), tt.chosen)
		}
		echoRoundTrip(t, c, "bytes "+tt.offer)
	}
}

func TestTunnelRefusesForeignOriginWith403(t *testing.T) {
	echo := tcpEcho(t)
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /same `+echo+`
	websocket_tunnel /listed `+echo+` {
		origins https://app.example.com
	}
}`)
	self := "http://localhost:" + strings.Split(tc.URL(""), ":")[2]
	for _, tt := range []struct {
		path, origin string
		status       int
	}{
		{"/same", "", 101},
		{"/same", self, 101},
		{"/same", "https://evil.example.com", 403},
		{"/listed", "https://app.example.com", 101},
		{"/listed", self, 403},
	} {
		var hdr http.Header
		if tt.origin != "" {
			hdr = originHeader(tt.origin)
		}
		c, status, msg := wsDial(t, tc.WSURL(tt.path), hdr)
		if status != tt.status {
			t.Fatalf("%s from %q: status %d (%s), want %d", tt.path, tt.origin, status, msg, tt.status)
		}
		if c != nil {
			echoRoundTrip(t, c, "ok")
		} else if msg != "origin not allowed" {
			t.Fatalf("refusal body %q", msg)
		}
	}
}

func TestTunnelHoldsPlaceholderUpstreamToAllowList(t *testing.T) {
	_, allowed := hostPort(tcpEcho(t))
	_, other := hostPort(tcpEcho(t))
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel 127.0.0.1:{http.request.uri.query.port} {
		allow 127.0.0.0/8:`+allowed+` localhost:`+allowed+`
	}
}`)
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/?port="+allowed), nil), "allowed")
	for _, q := range []string{other, "22", "x", ""} {
		if c, status, msg := wsDial(t, tc.WSURL("/?port="+q), nil); c != nil || status != 403 {
			t.Fatalf("port %q: status %d (%s), want 403", q, status, msg)
		}
	}
}

func TestTunnelRefusesPlaceholderUpstreamWithoutAllowList(t *testing.T) {
	tc := &testCaddy{t: t, HTTPPort: freePort(t), HTTPSPort: freePort(t), AdminPort: freePort(t)}
	err := tc.load(`http://localhost:@HTTP@ {
	websocket_tunnel 127.0.0.1:{http.request.uri.query.port}
}`)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("a client-chosen upstream without allow was accepted")
	}
	if !strings.Contains(err.Error(), "allow") {
		t.Fatalf("error %q does not ask for an allow list", err)
	}
}

func TestTunnelDeadUpstreamClosesWith1011(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+deadAddr(t)+`
}`)
	c := mustTunnel(t, tc.WSURL("/"), nil)
	if reason := expectTunnelClose(t, c, 1011, 5*time.Second); !strings.Contains(reason, "refused") {
		t.Fatalf("reason %q does not say the connection was refused", reason)
	}
}

func TestTunnelUpstreamEOFClosesWith1000(t *testing.T) {
	up := tcpServe(t, func(c net.Conn) {
		c.Write([]byte("banner"))
		c.Close()
	})
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+up+`
}`)
	c := mustTunnel(t, tc.WSURL("/"), nil)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "banner" {
		t.Fatalf("read %q %v", p, err)
	}
	expectTunnelClose(t, c, 1000, 5*time.Second)
}

func TestTunnelOverMaxConnectionsGets503(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+tcpEcho(t)+` {
		max_connections 2
	}
}`)
	a := mustTunnel(t, tc.WSURL("/"), nil)
	b := mustTunnel(t, tc.WSURL("/"), nil)
	echoRoundTrip(t, a, "a")
	echoRoundTrip(t, b, "b")
	if c, status, msg := wsDial(t, tc.WSURL("/"), nil); c != nil || status != 503 {
		t.Fatalf("third tunnel: status %d (%s), want 503", status, msg)
	}
	_ = a.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	expectTunnelClose(t, a, 1000, 5*time.Second)
	// The slot frees once the first tunnel has ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, status, _ := wsDial(t, tc.WSURL("/"), nil)
		if c != nil {
			echoRoundTrip(t, c, "c")
			break
		}
		if status != 503 || time.Now().After(deadline) {
			t.Fatalf("after a close: status %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTunnelSurvivesReload(t *testing.T) {
	echo := tcpEcho(t)
	site := func(body string) string {
		return `http://localhost:@HTTP@ {
	websocket_tunnel /t ` + echo + `
	respond "` + body + `"
}`
	}
	tc := startTunnelCaddy(t, site("one"))
	c := mustTunnel(t, tc.WSURL("/t"), nil)
	echoRoundTrip(t, c, "before reload")
	tc.Reload(site("two"))
	echoRoundTrip(t, c, "after reload")
	tc.Reload(`http://localhost:@HTTP@ {
	respond "no tunnel here any more"
}`)
	echoRoundTrip(t, c, "after the tunnel left the config")
}

func TestTunnelCloseDelayClosesTunnelsOfUnloadedConfig(t *testing.T) {
	echo := tcpEcho(t)
	site := `http://localhost:@HTTP@ {
	websocket_tunnel ` + echo + ` {
		close_delay 300ms
	}
}`
	tc := startTunnelCaddy(t, site)
	c := mustTunnel(t, tc.WSURL("/"), nil)
	echoRoundTrip(t, c, "before")
	start := time.Now()
	tc.Reload(site)
	echoRoundTrip(t, c, "during the delay")
	expectTunnelClose(t, c, 1001, 5*time.Second)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before close_delay", d)
	}
	// A tunnel of the new config is unaffected.
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/"), nil), "new config")
}

func TestTunnelStopSendsGoingAway(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+tcpEcho(t)+`
}`)
	c := mustTunnel(t, tc.WSURL("/"), nil)
	echoRoundTrip(t, c, "x")
	// Also a tunnel kept from an older config.
	tc.Reload(`http://localhost:@HTTP@ {
	websocket_tunnel /new ` + tcpEcho(t) + `
}`)
	d := mustTunnel(t, tc.WSURL("/new"), nil)
	echoRoundTrip(t, d, "y")
	stopped := make(chan struct{})
	go func() {
		_ = caddy.Stop()
		close(stopped)
	}()
	expectTunnelClose(t, c, 1001, 5*time.Second)
	expectTunnelClose(t, d, 1001, 5*time.Second)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("caddy.Stop did not return")
	}
}

func TestTunnelGoroutinesAndSocketsReturnToBaselineAfter1000Tunnels(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel `+tcpEcho(t)+`
}`)
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/"), nil), "warm up")
	time.Sleep(100 * time.Millisecond)
	baseG := settle(runtimeGoroutines, 0, 0)
	baseFD := openFDs()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range 1000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, status, msg := wsDial(t, tc.WSURL("/"), nil)
			if c == nil {
				t.Errorf("tunnel %d: %d %s", i, status, msg)
				return
			}
			echoRoundTrip(t, c, "sixteen bytes!!!")
			switch i % 3 {
			case 0: // clean close
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						break
					}
				}
				c.Close()
			default: // the client just vanishes
				c.Close()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if g := settle(runtimeGoroutines, baseG+3, 10*time.Second); g > baseG+3 {
		t.Fatalf("goroutines: %d after 1000 tunnels, baseline %d\n%s", g, baseG, goroutineDump())
	}
	if fd := settle(openFDs, baseFD+3, 10*time.Second); fd > baseFD+3 {
		t.Fatalf("open fds: %d after 1000 tunnels, baseline %d", fd, baseFD)
	}
}

// TestTunnelAcceptsNoVNC13Handshake: Debian's noVNC 1.3.0 offers no
// subprotocol, sends its page's Origin and offers permessage-deflate, which
// must not be negotiated.
func TestTunnelAcceptsNoVNC13Handshake(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /websockify `+tcpEcho(t)+`
}`)
	hdr := originHeader("http://localhost:" + strings.Split(tc.URL(""), ":")[2])
	// The dialer offers permessage-deflate, as browsers do.
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, EnableCompression: true}
	c, resp, err := d.Dial(tc.WSURL("/websockify"), hdr)
	if err != nil {
		t.Fatalf("noVNC-style handshake: %v", err)
	}
	defer c.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("negotiated %q, want no extension", ext)
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		t.Fatalf("chose subprotocol %q though none was offered", p)
	}
	echoRoundTrip(t, c, "RFB 003.008\n")
}

func TestTunnelReachesUnixSocketUpstream(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "up.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel unix/`+sock+`
}`)
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/"), nil), "over a unix socket")
}
