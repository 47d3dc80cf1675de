//go:build windows

package caddyws

import (
	"errors"
	"syscall"
)

// setRecvBuffer sets SO_RCVBUF before connect, so that the window the
// kernel announces is small from the first segment.
func setRecvBuffer(rc syscall.RawConn, size int) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
	})
	return errors.Join(err, serr)
}
