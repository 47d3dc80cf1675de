//go:build !unix

package push

import (
	"net"
	"syscall"
)

// rawSocket returns nil: on this system every write goes through the
// connection's writer goroutine.
func rawSocket(net.Conn) syscall.RawConn { return nil }

// tryWriteAll is never called where rawSocket returns nil.
func tryWriteAll(ws []nbWrite) {
	for i := range ws {
		ws[i].err = errWouldBlock
	}
}

// RingWrites tells whether writes are batched through io_uring: not on
// this system.
func RingWrites() (bool, error) { return false, errNoRing }

const rawSocketSupported = false
