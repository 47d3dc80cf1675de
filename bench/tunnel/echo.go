//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
)

// serveEcho is the TCP upstream every proxy in a comparison forwards to: it
// echoes each connection's bytes and half-closes after the client's EOF.
func serveEcho(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accepting: %w", err)
		}
		go echoConn(c.(*net.TCPConn))
	}
}

// bufs keeps the connections/s cell (thousands of short connections) from
// measuring the echo server's garbage collector.
var bufs = sync.Pool{New: func() any { return new([128 << 10]byte) }}

func echoConn(c *net.TCPConn) {
	defer c.Close()
	b := bufs.Get().(*[128 << 10]byte)
	defer bufs.Put(b)
	buf := b[:]
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = c.CloseWrite()
			return
		}
		if err != nil {
			return
		}
	}
}

func runEcho(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	// The comparison reads the address from this line.
	fmt.Fprintln(os.Stdout, ln.Addr().String())
	return serveEcho(ln)
}
