package testcaddy

import (
	"fmt"
	"net"
	"testing"
)

func TestPortsAreDistinctBindableAndBelowEphemeralRange(t *testing.T) {
	ports := Ports(t, 20)
	seen := map[int]bool{}
	for _, p := range ports {
		if p < portLow || p >= portHigh {
			t.Errorf("port %d outside [%d, %d)", p, portLow, portHigh)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d not bindable: %v", p, err)
			continue
		}
		l.Close()
	}
}

// A port reserved by one test (or one test process: the lock is a file
// lock) is not reserved again until it is released.
func TestReservedPortIsNotHandedOutAgainUntilReleased(t *testing.T) {
	p := Port(t)
	if _, ok := reserve(p); ok {
		t.Fatalf("port %d reserved twice", p)
	}
	ports, release, err := ReservePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reserve(ports[0]); ok {
		t.Fatalf("port %d reserved twice", ports[0])
	}
	release()
	unlock, ok := reserve(ports[0])
	if !ok {
		t.Fatalf("port %d still reserved after release", ports[0])
	}
	unlock()
}
