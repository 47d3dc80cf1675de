package brokertest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreePort returns a TCP port that is free on every interface and lies
// below the kernel's ephemeral range (32768+): a port from Listen(":0") is
// in that range, and once released, an outgoing connection of any process
// may take it as its local port, so a server restarted on it (or started
// a moment later) fails with "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		p := 10000 + rand.IntN(20000)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port below 30000")
	return 0
}
