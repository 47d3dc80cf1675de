package exec

import (
	"bytes"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	return n
}

func TestBulkTrafficGrowsThePipesWithinTheBudget(t *testing.T) {
	p := start(t, Config{Command: []string{"/bin/cat"}})
	c := p.Conn()
	small := pipeSize(t, p.stdout)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello\n" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	if got := pipeSize(t, p.stdout); got != small {
		t.Fatalf("a quiet session's pipe grew from %d to %d", small, got)
	}
	data := bytes.Repeat([]byte("x"), len(buf))
	go func() { _, _ = c.Write(data) }()
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if got := pipeSize(t, p.stdin); got != GrowPipeSize {
		t.Fatalf("stdin pipe %d bytes after a bulk write, want %d", got, GrowPipeSize)
	}
	if got := pipeSize(t, p.stdout); got != GrowPipeSize {
		t.Fatalf("stdout pipe %d bytes after a bulk write, want %d", got, GrowPipeSize)
	}
	if used := pipeGrowth.Load(); used != 2*int64(GrowPipeSize-small) {
		t.Fatalf("budget used %d, want %d", used, 2*(GrowPipeSize-small))
	}
	p.Close()
	p.Wait(0)
	if used := pipeGrowth.Load(); used != 0 {
		t.Fatalf("budget still used after the session: %d", used)
	}
}

func TestPipesStopGrowingAtTheBudget(t *testing.T) {
	pipeGrowth.Add(GrowPipeBudget - GrowPipeSize/2)
	defer pipeGrowth.Add(-(GrowPipeBudget - GrowPipeSize/2))
	p := start(t, Config{Command: []string{"/bin/cat"}})
	small := pipeSize(t, p.stdout)
	p.pipes.grow(p.stdout, p.stdin)
	if got := pipeSize(t, p.stdout); got != small {
		t.Fatalf("pipe grew to %d past the budget", got)
	}
	if used := pipeGrowth.Load(); used != GrowPipeBudget-GrowPipeSize/2 {
		t.Fatalf("budget %d after a refused growth", used)
	}
}

func TestNoGrowthAfterTheRelease(t *testing.T) {
	p := start(t, Config{Command: []string{"/bin/cat"}})
	small := pipeSize(t, p.stdout)
	used := pipeGrowth.Load()
	p.pipes.release()
	p.pipes.grow(p.stdout, p.stdin)
	if got := pipeSize(t, p.stdout); got != small {
		t.Fatalf("pipe grew to %d after the release", got)
	}
	if now := pipeGrowth.Load(); now != used {
		t.Fatalf("budget %d after a growth past the release, was %d", now, used)
	}
}
