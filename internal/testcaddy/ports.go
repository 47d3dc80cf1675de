// Package testcaddy is the one test harness of this repository: Caddy as
// its own process built from cmd/caddy (Binary, RunProcess) or, with the
// subpackage inproc, inside the test process, on ports from one picker
// (Ports, WithPorts).
package testcaddy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"testing"
)

// Ports are picked in [portLow, portHigh): below the kernel's ephemeral
// range (Linux 32768+, and most BSDs 49152+), so that no process's outgoing
// connection can take a port between the pick and the bind.
const (
	portLow  = 20000
	portHigh = 32000
)

// Ports returns n distinct TCP ports that are free on every interface and
// reserved for this test until it ends.
//
// The reservation is what makes the pick safe across the test binaries
// `go test ./...` runs at once: Caddy listens with SO_REUSEPORT, so a second
// Caddy that picked the same port binds it too, without "address already in
// use", and the kernel splits the connections between the two servers. A
// port reserved by one test process is never handed out by another.
func Ports(tb testing.TB, n int) []int {
	tb.Helper()
	ports, release, err := ReservePorts(n)
	if err != nil {
		tb.Fatalf("picking %d ports: %v", n, err)
	}
	tb.Cleanup(release)
	return ports
}

// Port is Ports(tb, 1)[0].
func Port(tb testing.TB) int {
	tb.Helper()
	return Ports(tb, 1)[0]
}

// ReservePorts is Ports for code without a testing.TB (TestMain, fixtures
// shared by a whole package): call release when the servers on the ports
// have stopped.
func ReservePorts(n int) (ports []int, release func(), err error) {
	var held []func()
	release = func() {
		for _, r := range held {
			r()
		}
	}
	seen := map[int]bool{}
	for tries := 0; len(ports) < n && tries < 2000; tries++ {
		p := portLow + rand.IntN(portHigh-portLow)
		if seen[p] {
			continue
		}
		seen[p] = true
		unlock, ok := reserve(p)
		if !ok {
			continue
		}
		if !bindable(p) {
			unlock()
			continue
		}
		held = append(held, unlock)
		ports = append(ports, p)
	}
	if len(ports) < n {
		release()
		return nil, nil, fmt.Errorf("only %d of %d ports free in [%d, %d)", len(ports), n, portLow, portHigh)
	}
	return ports, release, nil
}

// bindable tells whether p can be bound on every interface, without
// SO_REUSEPORT, so that a live Caddy's socket on p makes it fail.
func bindable(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// AddrInUse tells whether err is a bind that failed because the port was
// taken, by a process outside this suite, between the pick and the bind.
func AddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || (err != nil && strings.Contains(strings.ToLower(err.Error()), "address already in use"))
}

// WithPorts picks n ports and calls start with them, again with new ports
// (up to five times) while start fails with AddrInUse.
func WithPorts(tb testing.TB, n int, start func(ports []int) error) {
	tb.Helper()
	var err error
	for range 5 {
		ports, release, perr := ReservePorts(n)
		if perr != nil {
			tb.Fatalf("picking %d ports: %v", n, perr)
		}
		if err = start(ports); err == nil {
			tb.Cleanup(release)
			return
		}
		release()
		if !AddrInUse(err) {
			break
		}
		tb.Logf("a port was taken before it could be bound (%v); again with other ports", err)
	}
	tb.Fatal(err)
}
