package caddyws

// Clients of websocket_tunnel that try to make Caddy hold a tunnel, or burn
// a ticket, they should not.

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// stalledDialer opens WebSockets with a 4 KiB receive buffer, so that a
// server writing to a client that reads nothing blocks soon.
var stalledDialer = &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDial: func(network, addr string) (net.Conn, error) {
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
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
