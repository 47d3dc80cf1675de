package push

import (
	"sort"
	"sync"

	"github.com/caddyws/caddyws/broker"
)

// publishOrder lets publishes to one stream call the broker concurrently
// while their local delivery keeps the order of the positions the broker
// assigned. A broker call that stalls (a cluster failover) delays the local
// delivery of the publishes it overlaps, never their broker calls: k
// stalled publishes cost one timeout, not k.
//
// Each publish takes a ticket when it starts. When it returns it records
// barrier, the next ticket not yet given out: every publish the broker
// ordered before it started before it returned, so its ticket is below
// barrier. A returned publish is deliverable once every ticket below its
// barrier has returned; then it and every returned publish with a smaller
// offset are delivered, by offset. Nothing it waits for is unbounded: each
// broker call ends with its context or the broker's own timeout.
type publishOrder struct {
	mu      sync.Mutex
	streams map[string]*streamOrder // streams with publishes in progress
}

type streamOrder struct {
	mu      sync.Mutex // held while a batch is delivered: in order
	next    uint64
	running map[uint64]*pendingPublish // in the broker call
	ids     map[string]*pendingPublish // in progress by message id
	done    []*pendingPublish          // returned, waiting for delivery
}

// pendingPublish is one publish to one stream in progress.
type pendingPublish struct {
	ticket, barrier uint64
	id              string
	pos             broker.Position
	env             *envelope
	at              int64
	shared          *messageFrames
	n               int           // local recipients, set on delivery
	ready           chan struct{} // closed when delivered or failed
}

// stream returns the state of stream, locked, created when absent.
func (o *publishOrder) stream(stream string) *streamOrder {
	o.mu.Lock()
	if o.streams == nil {
		o.streams = make(map[string]*streamOrder)
	}
	s := o.streams[stream]
	if s == nil {
		s = &streamOrder{running: make(map[uint64]*pendingPublish), ids: make(map[string]*pendingPublish)}
		o.streams[stream] = s
	}
	s.mu.Lock()
	o.mu.Unlock()
	return s
}

// release unlocks s and forgets it when nothing is in progress on it.
func (o *publishOrder) release(stream string, s *streamOrder) {
	idle := len(s.running) == 0 && len(s.ids) == 0 && len(s.done) == 0
	s.mu.Unlock()
	if !idle {
		return
	}
	o.mu.Lock()
	s.mu.Lock()
	if len(s.running) == 0 && len(s.ids) == 0 && len(s.done) == 0 && o.streams[stream] == s {
		delete(o.streams, stream)
	}
	s.mu.Unlock()
	o.mu.Unlock()
}

// begin registers a publish of id to stream. It returns dup when seen says
// id already went to stream, or busy, the publish in progress with the same
// id (a retry racing its first attempt: wait for it, then look again).
// seen runs with the stream's state locked: a publish records its id before
// it finishes, so no retry slips between the two.
func (o *publishOrder) begin(stream, id string, env *envelope, shared *messageFrames, seen func() bool) (p, busy *pendingPublish, dup bool) {
	s := o.stream(stream)
	defer o.release(stream, s)
	if q := s.ids[id]; q != nil {
		return nil, q, false
	}
	if seen() {
		return nil, nil, true
	}
	p = &pendingPublish{ticket: s.next, id: id, env: env, shared: shared, ready: make(chan struct{})}
	s.next++
	s.running[p.ticket] = p
	s.ids[id] = p
	return p, nil, false
}

// finish records the broker's outcome for p (ok: stored at pos) and
// delivers, in offset order, what is deliverable now. deliver runs with
// the stream's state locked, so batches never interleave.
func (o *publishOrder) finish(stream string, p *pendingPublish, ok bool, pos broker.Position, ordered bool, deliver func(*pendingPublish) int) {
	s := o.stream(stream)
	defer o.release(stream, s)
	delete(s.running, p.ticket)
	delete(s.ids, p.id)
	p.pos = pos
	switch {
	case !ok:
		close(p.ready)
	case !ordered:
		// No positions: nothing to order by.
		p.n = deliver(p)
		close(p.ready)
	default:
		p.barrier = s.next
		s.done = append(s.done, p)
	}
	if len(s.done) == 0 {
		return
	}
	low := s.next // the smallest ticket still in the broker call
	for t := range s.running {
		if t < low {
			low = t
		}
	}
	var top uint64
	found := false
	for _, q := range s.done {
		if q.barrier <= low && (!found || q.pos.Offset > top) {
			top, found = q.pos.Offset, true
		}
	}
	if !found {
		return
	}
	sort.SliceStable(s.done, func(i, j int) bool { return s.done[i].pos.Offset < s.done[j].pos.Offset })
	k := 0
	for k < len(s.done) && s.done[k].pos.Offset <= top {
		q := s.done[k]
		q.n = deliver(q)
		close(q.ready)
		k++
	}
	s.done = append([]*pendingPublish(nil), s.done[k:]...)
}
