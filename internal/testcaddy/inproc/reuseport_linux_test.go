package inproc

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
)

// Why a bind check alone cannot make a pick safe: Caddy listens with
// SO_REUSEPORT, so a second Caddy (another test process that picked the
// same port) binds it as well, without "address already in use", and the
// kernel hands each new connection to one of the two.
func TestCaddyPortCanBeBoundAgainWithReusePort(t *testing.T) {
	tc := Start(t, `http://localhost:@HTTP@ {
	respond "first"
}`)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", tc.HTTPPort))
	if err != nil {
		t.Fatalf("a second SO_REUSEPORT listener on Caddy's port was refused (%v): then the bind check would be enough", err)
	}
	l.Close()
	if l, err := net.Listen("tcp", fmt.Sprintf(":%d", tc.HTTPPort)); err == nil {
		l.Close()
		t.Fatalf("the plain bind check passed on Caddy's live port %d", tc.HTTPPort)
	}
}
