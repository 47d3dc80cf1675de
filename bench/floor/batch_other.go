//go:build linux && !(amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package main

import (
	"errors"
	"net"
	"time"
)

// writeBatched needs io_uring through a 64-bit ring library.
func writeBatched([]net.Conn, []byte, int, int) (time.Duration, time.Duration, error) {
	return 0, 0, errors.New("-batch is for 64-bit Linux")
}
