//go:build linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package main

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/godzie44/go-uring/uring"
	"golang.org/x/sys/unix"
)

// writeBatched is writeAll through io_uring: the sends go to the kernel
// batch at a time (IORING_OP_SEND, MSG_DONTWAIT), one io_uring_enter per
// batch, on one locked thread. It is what websocket_push does on 64-bit
// Linux, reduced to the sends.
func writeBatched(conns []net.Conn, frame []byte, count, batch int) (cpu, wall time.Duration, err error) {
	fds := make([]int32, len(conns))
	for i, c := range conns {
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			return 0, 0, err
		}
		_ = rc.Control(func(fd uintptr) { fds[i] = int32(fd) })
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var ring *uring.Ring
		if ring, err = uring.New(uint32(batch)); err != nil {
			return
		}
		defer ring.Close()
		ops := make([]sendOp, batch)
		cqes := make([]*uring.CQEvent, batch)
		c0, t0 := threadCPU(), time.Now()
		for i := 0; i < count; i += batch {
			k := min(batch, count-i)
			for j := range k {
				ops[j] = sendOp{fd: fds[(i+j)%len(fds)], buf: frame}
				if err = ring.QueueSQE(&ops[j], 0, uint64(j)); err != nil {
					return
				}
			}
			if _, err = ring.SubmitAndWaitCQEvents(uint32(k)); err != nil {
				return
			}
			for got := 0; got < k; {
				n := ring.PeekCQEventBatch(cqes)
				for _, c := range cqes[:n] {
					if int(c.Res) != len(frame) {
						err = fmt.Errorf("send %d: %d (%v)", i+int(c.UserData), c.Res, c.Error())
					}
				}
				ring.AdvanceCQ(uint32(n))
				got += n
			}
			if err != nil {
				return
			}
		}
		cpu, wall = threadCPU()-c0, time.Since(t0)
	}()
	<-done
	return cpu, wall, err
}

type sendOp struct {
	fd  int32
	buf []byte
}

func (o *sendOp) PrepSQE(sqe *uring.SQEntry) {
	*sqe = uring.SQEntry{OpCode: uint8(uring.SendCode), Fd: o.fd, OpcodeFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL,
		Addr: uint64(uintptr(unsafe.Pointer(&o.buf[0]))), Len: uint32(len(o.buf))}
}

func (o *sendOp) Code() uring.OpCode { return uring.SendCode }
