package brokertest

import (
	"testing"

	"github.com/caddyws/caddyws/internal/testcaddy"
)

// FreePort returns a TCP port that is free on every interface, lies below
// the kernel's ephemeral range (so that no outgoing connection can take it
// before the server binds it) and is reserved for this test until it ends,
// also against the other test processes of this repository.
func FreePort(t testing.TB) int {
	t.Helper()
	return testcaddy.Port(t)
}
