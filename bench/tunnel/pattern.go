//go:build linux

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
)

// pattern is the byte stream one connection sends: a random period extended
// cyclically, so any window of up to ext bytes is a plain slice and both the
// writer (no allocation per message) and the verifier (memcmp) stay cheap.
// Each connection gets its own seed, so bytes crossing between connections
// fail verification too.
type pattern struct {
	buf    []byte
	period int
}

const (
	patternPeriod = 1 << 20
	patternExt    = 256 << 10 // >= maxMsg and >= the largest read
)

var (
	patternsMu sync.Mutex
	patterns   = map[uint64]*pattern{}
)

// newPattern returns the (cached, read-only) pattern of seed, so that no
// cell spends its timed part generating streams.
func newPattern(seed uint64) *pattern {
	patternsMu.Lock()
	defer patternsMu.Unlock()
	if p, ok := patterns[seed]; ok {
		return p
	}
	p := genPattern(seed)
	patterns[seed] = p
	return p
}

func genPattern(seed uint64) *pattern {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, patternPeriod+patternExt)
	for i := 0; i < patternPeriod; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	copy(b[patternPeriod:], b[:patternExt])
	return &pattern{buf: b, period: patternPeriod}
}

// at returns the n bytes of the stream starting at offset off (n <= patternExt).
func (p *pattern) at(off int64, n int) []byte {
	o := int(off % int64(p.period))
	return p.buf[o : o+n]
}

// verify checks that got is the stream's content at offset off.
func (p *pattern) verify(off int64, got []byte) error {
	for len(got) > 0 {
		n := min(len(got), patternExt)
		if want := p.at(off, n); !bytes.Equal(got[:n], want) {
			i := 0
			for i < n && got[i] == want[i] {
				i++
			}
			return fmt.Errorf("echo differs at stream offset %d", off+int64(i))
		}
		got, off = got[n:], off+int64(n)
	}
	return nil
}
