package tunnel

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// bytesWaiting returns a function that reports whether c's socket holds
// received bytes not read yet (SIOCINQ), or nil when c is not a socket.
func bytesWaiting(c net.Conn) func() bool {
	for {
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() bool {
		n, ierr := 0, error(nil)
		err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		return err == nil && ierr == nil && n > 0
	}
}
