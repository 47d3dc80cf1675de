package memory

import "time"

// entry is one kept message.
type entry struct {
	offset uint64
	at     time.Time
	data   []byte
}

// ring is a FIFO of entries that grows by doubling up to the history size,
// so a stream with three messages does not hold room for a thousand.
type ring struct {
	buf  []entry
	head int // index of the oldest entry
	n    int
}

func (r *ring) len() int { return r.n }

// at returns the i-th oldest entry.
func (r *ring) at(i int) *entry { return &r.buf[(r.head+i)%len(r.buf)] }

// push appends e, evicting the oldest entry when max entries are kept.
func (r *ring) push(e entry, max int) {
	if r.n == max {
		r.buf[r.head] = e
		r.head = (r.head + 1) % len(r.buf)
		return
	}
	if r.n == len(r.buf) {
		r.grow(max)
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
}

func (r *ring) grow(max int) {
	size := 2 * len(r.buf)
	if size < 4 {
		size = 4
	}
	if size > max {
		size = max
	}
	nb := make([]entry, size)
	for i := 0; i < r.n; i++ {
		nb[i] = *r.at(i)
	}
	r.buf, r.head = nb, 0
}

// expire drops the entries appended before cutoff, and releases the buffer
// when nothing is left.
func (r *ring) expire(cutoff time.Time) {
	for r.n > 0 && r.at(0).at.Before(cutoff) {
		*r.at(0) = entry{} // let the payload be collected
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	if r.n == 0 {
		r.buf, r.head = nil, 0
	}
}
