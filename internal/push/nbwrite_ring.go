//go:build linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package push

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/godzie44/go-uring/uring"
	"golang.org/x/sys/unix"
)

// On Linux a publish's non-waiting writes go to the kernel together: one
// io_uring_enter(2) submits a send per connection, each with MSG_DONTWAIT
// (the kernel tries it at once and completes it with what the socket took,
// or EAGAIN: it never waits for a socket), and their completions are read
// from the ring. The kernel's work per write is the same as write(2)'s;
// what goes is a system call per connection, which on virtual machines
// costs as much as the send itself.
//
// A socket is only named to the kernel while its descriptor is held: each
// connection's RawConn.Control runs the next one's, and the deepest submits
// the batch, so no descriptor of the batch can be closed and reused by
// another connection before the kernel has taken its file. (Control, not
// Write: the connection's writer is whoever set Conn.writing, and nothing
// else writes to its socket; a non-waiting send needs no deadline.)
//
// The rings are the process's, a few of them (one per P, at most 8), made
// on first use; a publish that finds none free makes its writes one system
// call each. Where io_uring is missing, refused (seccomp, a container's
// default profile, kernel.io_uring_disabled) or fails the self-test made
// once on a socket pair, every write is one system call, as on other
// systems.

// tryWriteAll makes each write of ws.
func tryWriteAll(ws []nbWrite) {
	if len(ws) > 1 && !ringWritesOff.Load() {
		if u := getRingWriter(); u != nil {
			u.writeAll(ws)
			putRingWriter(u)
			return
		}
	}
	tryWriteEach(ws)
}

const sendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL

// The opcodes used (include/uapi/linux/io_uring.h).
const (
	opSendmsg uint8 = 9
	opSend    uint8 = 26
)

// sendOp is one connection's send: IORING_OP_SEND for one buffer,
// IORING_OP_SENDMSG for several (msg and iov hold their pointers until
// the completion is read).
type sendOp struct {
	fd  int32
	buf []byte
	msg unix.Msghdr
	iov []unix.Iovec
}

func (o *sendOp) set(fd int32, bufs [][]byte) {
	o.fd = fd
	if len(bufs) == 1 {
		o.buf = bufs[0]
		return
	}
	o.buf = nil
	o.iov = o.iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		o.iov = append(o.iov, v)
	}
	o.msg = unix.Msghdr{}
	if len(o.iov) > 0 {
		o.msg.Iov = &o.iov[0]
		o.msg.SetIovlen(len(o.iov))
	}
}

func (o *sendOp) PrepSQE(sqe *uring.SQEntry) {
	*sqe = uring.SQEntry{OpCode: o.opcode(), Fd: o.fd, OpcodeFlags: sendFlags}
	if o.buf != nil {
		sqe.Addr = uint64(uintptr(unsafe.Pointer(&o.buf[0])))
		sqe.Len = uint32(len(o.buf))
		return
	}
	sqe.Addr = uint64(uintptr(unsafe.Pointer(&o.msg)))
	sqe.Len = 1 // one msghdr
}

func (o *sendOp) Code() uring.OpCode { return uring.OpCode(o.opcode()) }

func (o *sendOp) opcode() uint8 {
	if o.buf != nil {
		return opSend
	}
	return opSendmsg
}

func (o *sendOp) clear() {
	o.buf = nil
	clear(o.iov)
	o.iov = o.iov[:0]
	o.msg = unix.Msghdr{}
}

// ringWriter is one ring and what a batch of writes through it needs.
type ringWriter struct {
	ring *uring.Ring
	ops  [maxNowBatch]sendOp
	fds  [maxNowBatch]int32 // -1: the descriptor could not be held
	cqes [maxNowBatch]*uring.CQEvent
	// ws and i walk the batch while the descriptors are held (hold).
	ws     []nbWrite
	i      int
	holdFn func(uintptr)
	// broken: the kernel refused a batch; the ring is closed.
	broken bool
}

func newRingWriter() (*ringWriter, error) {
	r, err := uring.New(maxNowBatch)
	if err != nil {
		return nil, err
	}
	u := &ringWriter{ring: r}
	u.holdFn = u.hold
	return u, nil
}

var ringWriters struct {
	once sync.Once
	free chan *ringWriter // nil: io_uring is not used
	err  error            // why not
	n    atomic.Int64     // rings made
}

// RingWrites tells whether writes are batched through io_uring (after the
// first call, which makes the rings), and why not.
func RingWrites() (bool, error) {
	ringWriters.once.Do(makeRingWriters)
	return ringWriters.free != nil, ringWriters.err
}

func makeRingWriters() {
	n := min(runtime.GOMAXPROCS(0), 8)
	free := make(chan *ringWriter, n)
	for range n {
		u, err := newRingWriter()
		if err == nil && len(free) == 0 {
			err = u.selfTest()
		}
		if err != nil {
			if u != nil && !u.broken {
				_ = u.ring.Close()
			}
			if len(free) == 0 {
				ringWriters.err = err
				return
			}
			break
		}
		free <- u
		ringWriters.n.Add(1)
	}
	ringWriters.free = free
}

func getRingWriter() *ringWriter {
	ringWriters.once.Do(makeRingWriters)
	select {
	case u := <-ringWriters.free:
		return u
	default:
		return nil // none (a nil channel) or all in use
	}
}

func putRingWriter(u *ringWriter) {
	if u.broken {
		return
	}
	ringWriters.free <- u
}

// writeAll makes the writes of ws, at most maxNowBatch.
func (u *ringWriter) writeAll(ws []nbWrite) {
	if u.broken {
		tryWriteEach(ws)
		return
	}
	u.ws, u.i = ws, 0
	u.next()
	for i := range ws {
		u.ops[i].clear()
	}
	u.ws = nil
}

// next holds the descriptor of the next write of the batch and goes on
// from inside that hold (hold); past the last one it submits the batch.
func (u *ringWriter) next() {
	for u.i < len(u.ws) {
		w := &u.ws[u.i]
		at := u.i
		err := w.rc.Control(u.holdFn)
		if u.i != at {
			return // held: the rest of the batch ran inside
		}
		// Not held: the socket is closed.
		w.n, w.err = 0, err
		u.fds[at] = -1
		u.i++
	}
	u.submit()
}

func (u *ringWriter) hold(fd uintptr) {
	u.fds[u.i] = int32(fd)
	u.i++
	u.next()
}

// submit sends every held write of the batch with one io_uring_enter and
// reads their completions. Each socket's descriptor is held meanwhile.
func (u *ringWriter) submit() {
	queued := 0
	for i := range u.ws {
		w := &u.ws[i]
		if u.fds[i] < 0 {
			continue
		}
		if w.total == 0 {
			w.n, w.err = 0, nil
			continue
		}
		u.ops[i].set(u.fds[i], w.bufs)
		if err := u.ring.QueueSQE(&u.ops[i], 0, uint64(i)); err != nil {
			// The ring has room for a whole batch; should it not, this
			// write goes the ordinary way, its descriptor still held.
			n, werr := writeFd(int(u.fds[i]), w.bufs)
			w.n, w.err = wouldBlock(n, werr, w.total)
			continue
		}
		w.err = errRingPending
		queued++
	}
	ringSends.Add(int64(queued))
	if queued == 0 {
		return
	}
	// Submit makes a raw system call: the sends never wait, and the P stays
	// with this goroutine rather than being handed to another thread by
	// the runtime's monitor while the kernel works through the batch.
	_, err := ringSubmit(u.ring)
	got := u.reap()
	if err == nil && got < queued {
		// Sends with MSG_DONTWAIT complete during the submission; wait
		// briefly for any the kernel handed to a worker.
		_, err = u.ring.WaitCQEventsWithTimeout(uint32(queued-got), time.Second)
		got += u.reap()
	}
	if got < queued {
		// The kernel refused the batch or kept a send: what it did with
		// the rest is unknown, so those connections end (a stream with a
		// hole in it is worse), and the process stops using the ring.
		u.broken = true
		_ = u.ring.Close()
		if err == nil {
			err = errRingStuck
		}
		for i := range u.ws {
			if u.ws[i].err == errRingPending {
				u.ws[i].n, u.ws[i].err = 0, err
			}
		}
	}
}

// reap reads the completions waiting in the ring.
func (u *ringWriter) reap() int {
	got := 0
	for {
		k := u.ring.PeekCQEventBatch(u.cqes[:])
		if k == 0 {
			return got
		}
		for _, c := range u.cqes[:k] {
			if c.UserData >= uint64(len(u.ws)) || u.ws[c.UserData].err != errRingPending {
				continue // not this batch's (the self-test's are read apart)
			}
			w := &u.ws[c.UserData]
			if c.Res < 0 {
				w.n, w.err = wouldBlock(0, unix.Errno(-c.Res), w.total)
			} else {
				w.n, w.err = wouldBlock(int(c.Res), nil, w.total)
			}
			got++
		}
		clear(u.cqes[:k])
		u.ring.AdvanceCQ(uint32(k))
	}
}

// ringSubmit submits what is queued in r (a test replaces it to play a
// kernel that refuses a batch).
var ringSubmit = (*uring.Ring).Submit

var (
	errRingPending = errors.New("send submitted to io_uring")
	errRingStuck   = errors.New("io_uring kept a send past its deadline")
)
