package testcaddy

import (
	"testing"
	"time"
)

// WaitOneListener waits, after a reload, until one socket at most listens
// on each port. Caddy binds a new SO_REUSEPORT socket per config and
// answers /load once the old servers have begun shutting down, not once
// their sockets are closed: until then the kernel still hands the old
// socket some new connections, which the old config serves, or which
// net/http, reading the request while shutting down, closes without a
// response (the client sees EOF).
func WaitOneListener(tb testing.TB, ports ...int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, port := range ports {
		for port != 0 && listeningSockets(port) > 1 {
			if time.Now().After(deadline) {
				tb.Fatalf("the old config still listens on port %d 10s after the reload", port)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
