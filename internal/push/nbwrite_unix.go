//go:build unix

package push

import (
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawSocket returns the socket under nc when a write to it can be tried
// without blocking: a plain TCP or Unix socket. Anything else (TLS, whose
// records belong to the tls.Conn, or a wrapper of a listener module) gets
// nil and is written by the connection's writer goroutine.
func rawSocket(nc net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// tryWritev makes one write(2) or writev(2) of bufs (at most IOV_MAX) and
// never waits for the socket: it returns the bytes written, and
// errWouldBlock when the socket's buffer did not take all of them.
func tryWritev(rc syscall.RawConn, bufs [][]byte, total int) (int, error) {
	w := writeCalls.Get().(*writeCall)
	w.bufs = bufs
	// Control holds the descriptor, as Write would, without Write's lock
	// and deadline check: the caller is the connection's only writer, and
	// this write does not wait.
	err := rc.Control(w.fn)
	n, werr := w.n, w.err
	*w = writeCall{fn: w.fn}
	writeCalls.Put(w)
	if err != nil {
		return 0, err // closed
	}
	return wouldBlock(n, werr, total)
}

// writeCall is one tryWritev's function for Control, made once and
// reused: a closure per write would be an allocation per delivery.
type writeCall struct {
	bufs [][]byte
	n    int
	err  error
	fn   func(uintptr)
}

var writeCalls = sync.Pool{New: func() any {
	w := &writeCall{}
	w.fn = func(fd uintptr) { w.n, w.err = writeFd(int(fd), w.bufs) }
	return w
}}

// writeFd makes one write(2) or writev(2) of bufs to a socket whose
// descriptor the caller holds.
func writeFd(fd int, bufs [][]byte) (int, error) {
	for {
		var n int
		var err error
		if len(bufs) == 1 {
			n, err = unix.Write(fd, bufs[0])
		} else {
			n, err = writev(fd, bufs)
		}
		if err != unix.EINTR {
			return n, err
		}
	}
}

// tryWriteEach makes the writes one system call each.
func tryWriteEach(ws []nbWrite) {
	for i := range ws {
		w := &ws[i]
		w.n, w.err = tryWritev(w.rc, w.bufs, w.total)
	}
}

// wouldBlock maps what a non-waiting write of total bytes returned.
func wouldBlock(n int, werr error, total int) (int, error) {
	switch {
	case werr == unix.EAGAIN || werr == unix.EWOULDBLOCK:
		return 0, errWouldBlock
	case werr != nil:
		return 0, werr
	case n < total:
		return n, errWouldBlock
	}
	return n, nil
}

const rawSocketSupported = true
