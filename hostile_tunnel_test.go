package caddyws

// Clients of websocket_tunnel that try to make Caddy hold a tunnel, or burn
// a ticket, they should not.

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// stalledDialer opens WebSockets with a 4 KiB receive buffer, so that a
// server writing to a client that reads nothing blocks soon.
var stalledDialer = &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDial: func(network, addr string) (net.Conn, error) {
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error { return setRecvBuffer(rc, 4096) }}
	return nd.Dial(network, addr)
}}

func TestTunnelClientThatStopsReadingEndsWithinWriteTimeout(t *testing.T) {
	upClosed := make(chan time.Time, 1)
	flood := tcpServe(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				upClosed <- time.Now()
				return
			}
		}
	})
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel {
		upstream `+flood+`
		write_timeout 1s
	}
}`)
	baseline := runtimeGoroutines()
	c, _, err := stalledDialer.Dial(tc.WSURL("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// The client reads nothing from here on. Filling the kernel buffers
	// (a few MiB on loopback) takes milliseconds; then one write waits
	// write_timeout. 10 s of slack covers -race on a busy machine.
	const bound = 1*time.Second + 10*time.Second
	select {
	case at := <-upClosed:
		t.Logf("upstream closed %v after the client stopped reading", at.Sub(start).Round(10*time.Millisecond))
	case <-time.After(bound):
		t.Fatalf("upstream still open %v after the client stopped reading (write_timeout 1s): the stalled client pins the tunnel", bound)
	}
	c.Close()
	if n := settle(runtimeGoroutines, baseline+5, 10*time.Second); n > baseline+5 {
		t.Fatalf("%d goroutines, %d before the tunnel:\n%s", n, baseline, goroutineDump())
	}
}

func TestTunnelWriteTimeoutDefaultsToPushs(t *testing.T) {
	tun := &Tunnel{Upstream: "127.0.0.1:1"}
	provisionedTunnel(t, tun)
	if time.Duration(tun.WriteTimeout) != 10*time.Second {
		t.Fatalf("write_timeout defaults to %v, want 10s", time.Duration(tun.WriteTimeout))
	}
}

func TestTunnelSingleUseTicketIsSpentOnlyWhenTheTunnelOpens(t *testing.T) {
	echo, dead := tcpEcho(t), deadAddr(t)
	secret := strings.Repeat("k", 32)
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel {
		jwt_key `+writeSecretFile(t, secret)+`
		max_connections 1
	}
}`)
	ticket := func(jti, target string) string {
		return signToken(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"jti": jti, "target": target})
	}
	busy := mustTunnel(t, tc.WSURL("/?token="+ticket("first", echo)), nil)
	echoRoundTrip(t, busy, "holds the only slot")

	console := ticket("console", echo)
	if c, status, msg := wsDial(t, tc.WSURL("/?token="+console), nil); c != nil || status != 503 {
		t.Fatalf("at max_connections: status %d %q, want 503", status, msg)
	}
	busy.Close()
	c, status, msg := dialWhenSlotFree(t, tc.WSURL("/?token="+console))
	if c == nil {
		t.Fatalf("the ticket refused with 503 earlier, once capacity freed: status %d %q, want 101", status, msg)
	}
	echoRoundTrip(t, c, "console")
	c.Close()
	if c, status, _ := dialWhenSlotFree(t, tc.WSURL("/?token="+console)); c != nil || status != 401 {
		t.Fatalf("replay after a successful use: status %d, want 401", status)
	}

	// A failed dial does not spend it either: a retry reaches the dial
	// again (and fails the same way) instead of getting 401.
	unreachable := ticket("unreachable", dead)
	for i := range 2 {
		c, status, msg := dialWhenSlotFree(t, tc.WSURL("/?token="+unreachable))
		if c == nil {
			t.Fatalf("attempt %d at an unreachable target: status %d %q, want the upgrade and 1011", i+1, status, msg)
		}
		expectTunnelClose(t, c, 1011, 10*time.Second)
		c.Close()
	}
}

// dialWhenSlotFree dials url until it is not refused with 503: a closed
// tunnel frees its max_connections slot a moment after the client's close.
func dialWhenSlotFree(t *testing.T, url string) (*websocket.Conn, int, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, status, msg := wsDial(t, url, nil)
		if status != 503 || time.Now().After(deadline) {
			return c, status, msg
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeSecretFile(t *testing.T, secret string) string {
	t.Helper()
	p := t.TempDir() + "/ticket.secret"
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
