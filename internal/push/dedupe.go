package push

import (
	"hash/maphash"
	"sync"
	"time"
)

// recentIDs remembers which message ids went to which stream lately, so
// that a publisher's retry with the same id (after a 503 that said the
// message may have been stored) is not delivered twice: not by the node it
// retries on, and not by the nodes that already got the first attempt
// through the broker. Two generations of hashes: an entry lives between
// dedupeWindow/2 and dedupeWindow, or less when more than dedupeMax
// messages pass in that time; memory stays under 2*dedupeMax entries.
type recentIDs struct {
	mu        sync.Mutex
	seed      maphash.Seed
	cur, prev map[uint64]struct{}
	since     time.Time
}

const (
	dedupeWindow = 2 * time.Minute
	dedupeMax    = 1 << 16
)

func (r *recentIDs) key(stream, id string) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(stream)
	h.WriteByte(0)
	h.WriteString(id)
	return h.Sum64()
}

// rotateLocked makes room and ages entries out; r.mu must be held.
func (r *recentIDs) rotateLocked(now time.Time) {
	if r.cur == nil {
		r.seed = maphash.MakeSeed()
		r.cur, r.since = make(map[uint64]struct{}), now
	}
	if len(r.cur) >= dedupeMax || now.Sub(r.since) > dedupeWindow/2 {
		r.prev, r.cur, r.since = r.cur, make(map[uint64]struct{}), now
	}
}

// seen reports whether id was recorded for stream within the window.
func (r *recentIDs) seen(stream, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotateLocked(time.Now())
	k := r.key(stream, id)
	_, a := r.cur[k]
	_, b := r.prev[k]
	return a || b
}

// add records id for stream.
func (r *recentIDs) add(stream, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotateLocked(time.Now())
	r.cur[r.key(stream, id)] = struct{}{}
}

// firstTime records id for stream and reports whether it was new.
func (r *recentIDs) firstTime(stream, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotateLocked(time.Now())
	k := r.key(stream, id)
	_, a := r.cur[k]
	_, b := r.prev[k]
	if a || b {
		return false
	}
	r.cur[k] = struct{}{}
	return true
}
