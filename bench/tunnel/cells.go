//go:build linux

package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// echoReader reads the echo of what a writer sends and verifies every byte.
// The writer reports its final offset with finish; the reader ends once it
// has verified that many bytes. The mutex closes the race where the reader
// is already blocked in Read at the final offset when the writer finishes:
// the writer then wakes it with a past deadline.
type echoReader struct {
	s   stream
	pat *pattern

	mu       sync.Mutex
	off      int64
	final    int64
	finished bool
	onRead   func(off int64) // called with the new offset, under mu
}

func (r *echoReader) finish(final int64) {
	r.mu.Lock()
	r.final, r.finished = final, true
	idle := r.off == final
	r.mu.Unlock()
	if idle {
		_ = r.s.SetReadDeadline(time.Unix(1, 0))
	}
}

func (r *echoReader) run(deadline time.Time) error {
	buf := make([]byte, patternExt)
	_ = r.s.SetReadDeadline(deadline)
	for {
		n, err := r.s.Read(buf)
		if n > 0 {
			if verr := r.pat.verify(r.off, buf[:n]); verr != nil {
				return verr
			}
		}
		r.mu.Lock()
		r.off += int64(n)
		if r.onRead != nil {
			r.onRead(r.off)
		}
		done := r.finished && r.off == r.final
		over := r.finished && r.off > r.final
		off := r.off
		r.mu.Unlock()
		if over {
			return fmt.Errorf("echo has %d bytes more than was sent", off-r.final)
		}
		if done {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading echo at offset %d: %w", off, err)
		}
	}
}

type tputResult struct {
	MBps  float64       // verified echo, 10^6 bytes per second, all connections
	Bytes int64         // verified echo bytes
	CPU   time.Duration // proxy CPU during the cell
}

// throughput runs conns connections for dur, each sending size-byte
// messages with at most window bytes not yet echoed, and verifies every
// echoed byte.
func throughput(ctx context.Context, t target, size, conns int, dur time.Duration, pr probe) (tputResult, error) {
	var res tputResult
	ss := make([]stream, 0, conns)
	defer func() {
		for _, s := range ss {
			s.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		s, err := dial(ctx, t)
		if err != nil {
			return res, err
		}
		ss = append(ss, s)
	}
	windowMsgs := max(8, (256<<10)/size)
	for i := range ss {
		newPattern(uint64(i + 1))
	}
	before := pr.read()
	start := time.Now()
	end := start.Add(dur)
	errs := make(chan error, 2*conns)
	totals := make([]int64, conns)
	var wg sync.WaitGroup
	for i, s := range ss {
		pat := newPattern(uint64(i + 1))
		tokens := make(chan struct{}, windowMsgs)
		er := &echoReader{s: s, pat: pat}
		released := int64(0)
		er.onRead = func(off int64) {
			for off >= (released+1)*int64(size) {
				<-tokens
				released++
			}
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			var off int64
			for time.Now().Before(end) {
				tokens <- struct{}{}
				if err := s.WriteMsg(pat.at(off, size)); err != nil {
					errs <- fmt.Errorf("writing at offset %d: %w", off, err)
					s.Close()
					return
				}
				off += int64(size)
			}
			er.finish(off)
		}()
		go func() {
			defer wg.Done()
			if err := er.run(end.Add(20 * time.Second)); err != nil {
				errs <- err
				s.Close()
				// Unblock a writer waiting for window space.
				for {
					select {
					case <-tokens:
					case <-time.After(100 * time.Millisecond):
						return
					}
				}
			}
			totals[i] = er.off
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.CPU = pr.read().CPU - before.CPU
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	for _, n := range totals {
		res.Bytes += n
	}
	res.MBps = float64(res.Bytes) / elapsed.Seconds() / 1e6
	return res, nil
}

type rttResult struct {
	P50, P99 time.Duration
	N        int
}

// roundTrips sends one size-byte message at a time and times its full echo.
// It spreads dur over rttConns connections in turn: on a small VM the
// latency of one connection can sit in one of two modes for its whole life
// (which CPUs its threads wake on), and one connection would report a coin
// toss.
func roundTrips(ctx context.Context, t target, size int, dur time.Duration) (rttResult, error) {
	var res rttResult
	var samples []time.Duration
	pat := newPattern(7)
	buf := make([]byte, size)
	for k := 0; k < rttConns; k++ {
		s, err := dial(ctx, t)
		if err != nil {
			return res, err
		}
		samples, err = roundTripsOn(s, pat, buf, dur/rttConns, samples)
		s.Close()
		if err != nil {
			return res, err
		}
	}
	if len(samples) == 0 {
		return res, fmt.Errorf("no round trip measured")
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	res.N = len(samples)
	res.P50 = samples[len(samples)/2]
	res.P99 = samples[len(samples)*99/100]
	return res, nil
}

const rttConns = 4

func roundTripsOn(s stream, pat *pattern, buf []byte, dur time.Duration, samples []time.Duration) ([]time.Duration, error) {
	size := len(buf)
	var off int64
	const warmup = 50
	end := time.Now().Add(dur)
	// At least 20 samples per connection, however slow the peer.
	for i := 0; i < 200000 && (i < warmup+20 || time.Now().Before(end)); i++ {
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		t0 := time.Now()
		if err := s.WriteMsg(pat.at(off, size)); err != nil {
			return samples, fmt.Errorf("writing: %w", err)
		}
		for got := 0; got < size; {
			n, err := s.Read(buf[got:])
			got += n
			if err != nil && got < size {
				return samples, fmt.Errorf("reading echo: %w", err)
			}
		}
		d := time.Since(t0)
		if err := pat.verify(off, buf); err != nil {
			return samples, err
		}
		off += int64(size)
		if i >= warmup {
			samples = append(samples, d)
		}
	}
	return samples, nil
}

// connsPerSec runs par loops that each open a connection, echo 16 bytes,
// and close it cleanly (waiting for the peer's own close), for dur. With
// par 1 it measures the latency of a whole connection's life; with more, how
// many the proxy can set up and tear down per second.
func connsPerSec(ctx context.Context, t target, dur time.Duration, par int) (rate float64, count int, err error) {
	pat := newPattern(11)
	start := time.Now()
	var mu sync.Mutex
	total := 0
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for n := 0; time.Since(start) < dur && ctx.Err() == nil; n++ {
				if err := oneConn(ctx, t, pat, int64((n*par+w)*16), buf); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d of loop %d: %w", n, w, err)
					}
					mu.Unlock()
					return
				}
				mu.Lock()
				total++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, total, firstErr
	}
	return float64(total) / time.Since(start).Seconds(), total, nil
}

func oneConn(ctx context.Context, t target, pat *pattern, off int64, buf []byte) error {
	s, err := dial(ctx, t)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	_ = s.SetReadDeadline(deadline)
	err = s.WriteMsg(pat.at(off, 16))
	for got := 0; err == nil && got < 16; {
		var k int
		k, err = s.Read(buf[got:])
		got += k
		if got == 16 {
			err = nil
		}
	}
	if err == nil {
		err = pat.verify(off, buf)
	}
	if err == nil {
		err = s.Shutdown(deadline)
	}
	if err != nil {
		s.Close()
	}
	return err
}

type floodResult struct {
	BaseRSS      int64 // RSS of the proxy's process tree when the flood starts, bytes
	PeakRSS      int64 // highest RSS of the proxy's process tree, bytes
	Accepted     int64 // bytes the proxy took in while the client did not read
	AcceptedHalf int64 // ... by half-time: with backpressure, Accepted is no more
	Drained      bool  // every byte came back, verified
}

// flood writes 1 KiB messages flat out for dur while not reading at all, so
// only backpressure through the proxy can stop the writer (capped at
// maxBytes); then it reads everything back and verifies it.
func flood(ctx context.Context, t target, dur time.Duration, maxBytes int64, pr probe) (floodResult, error) {
	var res floodResult
	s, err := dial(ctx, t)
	if err != nil {
		return res, err
	}
	defer s.Close()
	pr.resetPeak()
	res.BaseRSS = pr.read().RSS
	smp := startSampler(pr, 20*time.Millisecond)
	pat := newPattern(13)
	er := &echoReader{s: s, pat: pat}
	end := time.Now().Add(dur)
	var mu sync.Mutex
	var written int64
	werr := make(chan error, 1)
	go func() {
		var off int64
		for time.Now().Before(end) && off < maxBytes {
			if err := s.WriteMsg(pat.at(off, 1024)); err != nil {
				werr <- fmt.Errorf("writing at offset %d: %w", off, err)
				return
			}
			off += 1024
			mu.Lock()
			written = off
			mu.Unlock()
		}
		er.finish(off)
		werr <- nil
	}()
	for _, at := range []time.Time{end.Add(-dur / 2), end} {
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
			return res, ctx.Err()
		}
		if at != end {
			mu.Lock()
			res.AcceptedHalf = written
			mu.Unlock()
		}
	}
	mu.Lock()
	res.Accepted = written
	mu.Unlock()
	rerr := er.run(time.Now().Add(30 * time.Second))
	res.PeakRSS = smp.Stop()
	if rerr != nil {
		s.Close()
		<-werr
		return res, fmt.Errorf("draining the flood: %w", rerr)
	}
	if err := <-werr; err != nil {
		return res, err
	}
	res.Drained = true
	return res, nil
}
