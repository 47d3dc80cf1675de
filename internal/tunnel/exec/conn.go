package exec

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Conn presents the program to the tunnel relay as a connection: reads
// are its output, writes its input, CloseWrite and Close end it (see
// Terminate), and the end of its output waits for its exit status.
type Conn struct {
	p    *Process
	addr execAddr
}

// Conn returns the program as a connection for the relay.
func (p *Process) Conn() *Conn {
	return &Conn{p: p, addr: execAddr(p.cmd.Path)}
}

// Read reads the program's output. The end of a terminal (EIO once every
// process holding it exited) and a read still waiting once the grace after
// the exit passed are both io.EOF.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.p.stdout.Read(b)
	if n == len(b) && n >= growAfter && !c.p.pty {
		c.p.pipes.grow(c.p.stdout, c.p.stdin)
	}
	if err == nil || err == io.EOF {
		return n, err
	}
	switch {
	case c.p.pty && errors.Is(err, syscall.EIO):
		return n, io.EOF
	case errors.Is(err, os.ErrDeadlineExceeded) && c.p.exited():
		return n, io.EOF
	}
	return n, err
}

// Write writes to the program's input.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) >= growAfter && !c.p.pty {
		c.p.pipes.grow(c.p.stdin, c.p.stdout)
	}
	return c.p.stdin.Write(b)
}

// CloseWrite ends the program: the client will send nothing more.
func (c *Conn) CloseWrite() error {
	c.p.Terminate()
	return nil
}

// Close ends the program and closes our ends of its pipes.
func (c *Conn) Close() error { return c.p.Close() }

// EndReason waits for the exit once the output ended (terminating the
// program if it does not exit within the kill grace) and returns the close
// code and reason for the client: 1000 and the exit status.
func (c *Conn) EndReason(error) (int, string) {
	c.p.Wait(c.p.grace)
	return 1000, c.p.Status()
}

func (c *Conn) LocalAddr() net.Addr  { return c.addr }
func (c *Conn) RemoteAddr() net.Addr { return c.addr }

func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.p.stdout.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.p.stdin.SetWriteDeadline(t) }

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// execAddr names the program in the relay's addresses.
type execAddr string

func (execAddr) Network() string  { return "exec" }
func (a execAddr) String() string { return string(a) }

var _ net.Conn = (*Conn)(nil)
