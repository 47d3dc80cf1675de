package exec

import (
	"os"
	"sync"
	"sync/atomic"
)

// Busy sessions get larger pipes, so bulk output and input move in fewer,
// larger reads and writes, with fewer wake-ups of Caddy and the program.
// A pipe's capacity is charged to the user who created it (Caddy's) against
// the kernel's per-user pipe limit (fs.pipe-user-pages-soft, 64 MiB by
// default), past which new pipes of that user shrink to two pages: so only
// sessions whose traffic fills a read are grown, and the extra capacity of
// all sessions together stays within GrowPipeBudget.
const (
	// GrowPipeSize is the capacity a busy session's stdin and stdout
	// pipes are grown to (the default is 64 KiB).
	GrowPipeSize = 1 << 20
	// GrowPipeBudget bounds the extra capacity of all grown pipes of the
	// process together; past it sessions keep the default pipes.
	GrowPipeBudget = 16 << 20
	// growAfter is the smallest read that, filled, marks a session busy.
	growAfter = 32 << 10
)

// pipeGrowth is the extra capacity of every grown pipe, in bytes.
var pipeGrowth atomic.Int64

// grownPipes records what one session took from the budget.
type grownPipes struct {
	tried atomic.Bool // the fast check on every bulk read and write
	// mu orders a growth with the release, which may come from another
	// goroutine while a last read is still growing the pipes.
	mu       sync.Mutex
	released bool
	extra    int64
}

// grow grows stdin and stdout to GrowPipeSize, once per session, if the
// budget allows (on Linux; elsewhere pipes keep their size).
func (g *grownPipes) grow(files ...*os.File) {
	if g.tried.Swap(true) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return
	}
	for _, f := range files {
		if f == nil {
			continue
		}
		if pipeGrowth.Add(GrowPipeSize) > GrowPipeBudget {
			pipeGrowth.Add(-GrowPipeSize)
			return
		}
		extra, ok := setPipeSize(f, GrowPipeSize)
		// What the kernel did not grant goes back at once.
		pipeGrowth.Add(extra - GrowPipeSize)
		if !ok {
			return
		}
		g.extra += extra
	}
}

// release gives the session's share of the budget back; its pipes are
// closed or about to be.
func (g *grownPipes) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.released = true
	pipeGrowth.Add(-g.extra)
	g.extra = 0
}
