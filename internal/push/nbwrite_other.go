//go:build !unix

package push

import (
	"net"
	"syscall"
)

// rawSocket returns nil: on this system every write goes through the
// connection's writer goroutine.
func rawSocket(net.Conn) syscall.RawConn { return nil }

// tryWritev is never called where rawSocket returns nil.
func tryWritev(syscall.RawConn, [][]byte, int) (int, error) { return 0, errWouldBlock }

const rawSocketSupported = false
