package broker

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Echoes lets a broker hand the node its own message when a publish
// outcome is unknown. A broker's subscription normally skips the node's own
// messages (the hub delivers locally); but when the request reached the
// server and its reply was lost (ErrMaybeStored), the hub delivered nothing,
// so the copy that comes back through the subscription is delivered
// instead, once. Brokers call Begin before sending, End with the outcome,
// and Arrived for each own message their subscription sees.
//
// Bounded: at most maxEchoes publishes are tracked, each for echoWindow;
// the oldest are forgotten first (their local subscribers then miss the
// message, as all did before).
type Echoes struct {
	n    atomic.Int64 // entries, read without the lock on the hot path
	mu   sync.Mutex
	seed maphash.Seed
	m    map[uint64]*echo
}

const (
	maxEchoes  = 4096
	echoWindow = 2 * time.Minute
)

type echo struct {
	state int // pending (in flight), released (outcome unknown)
	held  *Message
	at    time.Time
}

const (
	pending = iota
	released
)

// Pending is one publish in flight.
type Pending struct {
	e   *Echoes
	key uint64
}

// key identifies a message without reading all of a large payload: the
// stream, the length and both ends (a push envelope starts with its unique
// id).
func (e *Echoes) key(stream string, data []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteString(stream)
	h.WriteByte(0)
	var l [8]byte
	for i, n := 0, len(data); i < 8; i++ {
		l[i] = byte(n >> (8 * i))
	}
	h.Write(l[:])
	if len(data) <= 512 {
		h.Write(data)
	} else {
		h.Write(data[:256])
		h.Write(data[len(data)-256:])
	}
	return h.Sum64()
}

// Begin tracks a publish about to be sent.
func (e *Echoes) Begin(stream string, data []byte) *Pending {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.seed = maphash.MakeSeed()
		e.m = make(map[uint64]*echo)
	}
	k := e.key(stream, data)
	now := time.Now()
	if len(e.m) >= maxEchoes {
		e.pruneLocked(now)
	}
	e.m[k] = &echo{state: pending, at: now}
	e.n.Store(int64(len(e.m)))
	return &Pending{e: e, key: k}
}

// pruneLocked drops expired entries, then the oldest while full.
func (e *Echoes) pruneLocked(now time.Time) {
	var oldest uint64
	var oldestAt time.Time
	for k, v := range e.m {
		if now.Sub(v.at) > echoWindow {
			delete(e.m, k)
			continue
		}
		if oldestAt.IsZero() || v.at.Before(oldestAt) {
			oldest, oldestAt = k, v.at
		}
	}
	if len(e.m) >= maxEchoes {
		delete(e.m, oldest)
	}
}

// End resolves the publish. With unknown false (stored and acknowledged,
// or surely not stored) nothing comes back to the node. With unknown true
// a copy that already arrived is returned, to be delivered now; a later
// one is delivered by Arrived.
func (p *Pending) End(unknown bool) *Message {
	e := p.e
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.m[p.key]
	if v == nil {
		return nil
	}
	if !unknown || v.held != nil {
		delete(e.m, p.key)
		e.n.Store(int64(len(e.m)))
		if !unknown {
			return nil
		}
		return v.held
	}
	v.state, v.at = released, time.Now()
	return nil
}

// Arrived is called with each of the node's own messages the subscription
// receives; it reports whether to deliver m to the Handler now.
func (e *Echoes) Arrived(m Message) bool {
	if e.n.Load() == 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.key(m.Stream, m.Data)
	v := e.m[k]
	switch {
	case v == nil:
		return false
	case v.state == pending:
		// The outcome is still open: keep it, End decides.
		if v.held == nil {
			held := m
			v.held = &held
		}
		return false
	case time.Since(v.at) > echoWindow:
		delete(e.m, k)
		e.n.Store(int64(len(e.m)))
		return false
	default:
		delete(e.m, k)
		e.n.Store(int64(len(e.m)))
		return true
	}
}
