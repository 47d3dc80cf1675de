//go:build linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package push

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// selfTest checks on two socket pairs what the batched writes rely on:
// one send and one gathered send in a batch arrive whole, and either kind
// to a full socket completes at once with EAGAIN (it is not kept waiting
// for room) while the other send of the batch goes through.
func (u *ringWriter) selfTest() error {
	a, aPeer, err := testSocketPair()
	if err != nil {
		return err
	}
	defer a.Close()
	defer aPeer.Close()
	b, bPeer, err := testSocketPair()
	if err != nil {
		return err
	}
	defer b.Close()
	defer bPeer.Close()
	ra, rb := rawSocket(a), rawSocket(b)
	if ra == nil || rb == nil {
		return errors.New("io_uring self-test: no raw socket")
	}
	one := [][]byte{[]byte("one send")}
	two := [][]byte{[]byte("a gathered"), []byte(" send")}
	ws := []nbWrite{{rc: ra, bufs: one, total: 8}, {rc: rb, bufs: two, total: 15}}
	u.writeAll(ws)
	if u.broken || ws[0].err != nil || ws[0].n != 8 || ws[1].err != nil || ws[1].n != 15 {
		return fmt.Errorf("io_uring self-test: sends wrote %d (%v) and %d (%v)", ws[0].n, ws[0].err, ws[1].n, ws[1].err)
	}
	if err := expectRead(aPeer, "one send"); err != nil {
		return err
	}
	if err := expectRead(bPeer, "a gathered send"); err != nil {
		return err
	}
	// Fill a's buffer, then a batch again: a must come back at once with
	// nothing written, b with everything.
	fill := make([]byte, 64<<10)
	var ferr error
	if err := ra.Write(func(fd uintptr) bool {
		for ferr == nil {
			_, ferr = unix.Write(int(fd), fill)
		}
		return true
	}); err != nil || !errors.Is(ferr, unix.EAGAIN) {
		return fmt.Errorf("io_uring self-test: filling a socket: %v %v", err, ferr)
	}
	for _, full := range []nbWrite{{rc: ra, bufs: one, total: 8}, {rc: ra, bufs: two, total: 15}} {
		ws = []nbWrite{full, {rc: rb, bufs: one, total: 8}}
		u.writeAll(ws)
		if u.broken || ws[0].err != errWouldBlock || ws[0].n != 0 || ws[1].err != nil || ws[1].n != 8 {
			return fmt.Errorf("io_uring self-test: a full socket's send: %d (%v), the other's %d (%v)", ws[0].n, ws[0].err, ws[1].n, ws[1].err)
		}
		if err := expectRead(bPeer, "one send"); err != nil {
			return err
		}
	}
	return nil
}

// testSocketPair returns both ends of a Unix stream socket pair as
// net.Conns, the first with a small send buffer.
func testSocketPair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("io_uring self-test: %w", err)
	}
	_ = unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "selftest")
		c, err := net.FileConn(f) // a duplicate: f is closed below
		_ = f.Close()
		if err != nil {
			if i == 1 {
				_ = conns[0].Close()
			} else {
				_ = unix.Close(fds[1])
			}
			return nil, nil, fmt.Errorf("io_uring self-test: %w", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

func expectRead(c net.Conn, want string) error {
	got := make([]byte, len(want)+1)
	n := 0
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		k, e := unix.Read(int(fd), got[n:])
		if e == unix.EAGAIN {
			return n >= len(want) // wait for the rest
		}
		if e != nil {
			rerr = e
			return true
		}
		n += k
		return k == 0 || n >= len(want)
	}); err != nil {
		return err
	}
	if rerr != nil || !bytes.Equal(got[:n], []byte(want)) {
		return fmt.Errorf("io_uring self-test: read %q (%v), want %q", got[:n], rerr, want)
	}
	return nil
}
