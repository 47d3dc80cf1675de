//go:build linux && (amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x)

package push

import (
	"errors"
	"syscall"
	"testing"

	"github.com/godzie44/go-uring/uring"
)

// A batch the kernel refuses (here: the submission fails) ends with an error
// for every send of it, never with a guess at what was written, and the
// ring is not used again.
func TestRingRefusingABatchFailsItsSends(t *testing.T) {
	if ok, err := RingWrites(); !ok {
		t.Skipf("io_uring writes are off here: %v", err)
	}
	u, err := newRingWriter()
	if err != nil {
		t.Fatal(err)
	}
	a, aPeer, err := testSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer aPeer.Close()
	b, bPeer, err := testSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer bPeer.Close()
	one := [][]byte{[]byte("one send")}
	ws := []nbWrite{{rc: rawSocket(a), bufs: one, total: 8}, {rc: rawSocket(b), bufs: one, total: 8}}
	u.writeAll(ws)
	if ws[0].err != nil || ws[1].err != nil || u.broken {
		t.Fatalf("a working ring: %v, %v (broken %v)", ws[0].err, ws[1].err, u.broken)
	}
	ringSubmit = func(*uring.Ring) (uint, error) { return 0, syscall.ENOMEM }
	defer func() { ringSubmit = (*uring.Ring).Submit }()
	ws = []nbWrite{{rc: rawSocket(a), bufs: one, total: 8}, {rc: rawSocket(b), bufs: one, total: 8}}
	u.writeAll(ws)
	if !u.broken {
		t.Fatal("the ring is not marked broken")
	}
	for i, w := range ws {
		if w.err == nil || errors.Is(w.err, errWouldBlock) || w.err == errRingPending || w.n != 0 {
			t.Fatalf("send %d of a refused batch: %d, %v", i, w.n, w.err)
		}
	}
	// A broken ring writes one system call each from then on.
	ws = []nbWrite{{rc: rawSocket(a), bufs: one, total: 8}, {rc: rawSocket(b), bufs: one, total: 8}}
	u.writeAll(ws)
	if ws[0].err != nil || ws[0].n != 8 || ws[1].err != nil || ws[1].n != 8 {
		t.Fatalf("after the ring broke: %d %v, %d %v", ws[0].n, ws[0].err, ws[1].n, ws[1].err)
	}
}
