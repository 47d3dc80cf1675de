package tunnel

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Target is where a tunnel's bytes go: a TCP address or a unix socket.
type Target struct {
	// Network is "tcp" or "unix".
	Network string
	// Host is the host name or IP of a TCP target (no brackets); empty for
	// unix sockets.
	Host string
	// Port is the TCP port; 0 for unix sockets.
	Port int
	// Path is the socket path of a unix target.
	Path string
}

// ParseTarget reads a target in the forms users write: "host:port",
// "[v6addr]:port", or "unix/<path>" (Caddy's spelling for unix sockets;
// "unix:<path>" is accepted too, as websockify writes it).
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, fmt.Errorf("empty target")
	}
	for _, prefix := range []string{"unix/", "unix:", "unix_socket:"} {
		if strings.HasPrefix(s, prefix) {
			p := strings.TrimPrefix(s, prefix)
			if p == "" {
				return Target{}, fmt.Errorf("target %q: empty unix socket path", s)
			}
			return Target{Network: "unix", Path: p}, nil
		}
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return Target{}, fmt.Errorf("target %q: want host:port or unix/<path>: %w", s, err)
	}
	if host == "" {
		return Target{}, fmt.Errorf("target %q: empty host", s)
	}
	if strings.ContainsAny(host, " \t/\\{}") {
		return Target{}, fmt.Errorf("target %q: invalid host", s)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return Target{}, fmt.Errorf("target %q: port must be 1-65535", s)
	}
	return Target{Network: "tcp", Host: host, Port: port}, nil
}

// Address is the address to dial on Network.
func (t Target) Address() string {
	if t.Network == "unix" {
		return t.Path
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// String is the target as users write it.
func (t Target) String() string {
	if t.Network == "unix" {
		return "unix/" + t.Path
	}
	return t.Address()
}
