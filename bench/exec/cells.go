//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

var dialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}

func dial(ctx context.Context, url string) (*websocket.Conn, error) {
	c, _, err := dialer.DialContext(ctx, url, nil)
	return c, err
}

// closeConn sends a close frame, then drops the connection.
// setDeadline sets both deadlines of c.
func setDeadline(c *websocket.Conn, t time.Time) {
	_ = c.SetReadDeadline(t)
	_ = c.SetWriteDeadline(t)
}

func closeConn(c *websocket.Conn) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.Close()
}

// sessionResult is what the sessions cell measured.
type sessionResult struct {
	rate  float64 // sessions per second
	count int64
	// Medians, in ms: dial to the upgrade's 101, and from there to the
	// program's first line (program start included when the server starts
	// it after the upgrade).
	connectMs, firstMs float64
}

// sessions runs par clients for dur, each one session after another:
// connect, wait for the program's first line, close.
func sessions(ctx context.Context, url string, par int, dur time.Duration) (sessionResult, error) {
	end := time.Now().Add(dur)
	var n atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var connects, firsts []float64
	errc := make(chan error, par)
	start := time.Now()
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				t0 := time.Now()
				c, err := dial(ctx, url)
				if err != nil {
					errc <- fmt.Errorf("dial: %w", err)
					return
				}
				t1 := time.Now()
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, msg, err := c.ReadMessage()
				t2 := time.Now()
				closeConn(c)
				if err != nil || string(msg) != "ready" {
					errc <- fmt.Errorf("first line %q: %v", msg, err)
					return
				}
				n.Add(1)
				mu.Lock()
				connects = append(connects, float64(t1.Sub(t0).Microseconds())/1e3)
				firsts = append(firsts, float64(t2.Sub(t1).Microseconds())/1e3)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r := sessionResult{count: n.Load(), rate: float64(n.Load()) / time.Since(start).Seconds(),
		connectMs: median(connects), firstMs: median(firsts)}
	select {
	case err := <-errc:
		return r, err
	default:
	}
	return r, nil
}

// roundTrips sends one message of size bytes at a time through cat and
// waits for its echo; it returns the p50 and p99 in microseconds.
func roundTrips(ctx context.Context, url string, typ, size int, dur time.Duration) (p50, p99 float64, count int, err error) {
	c, err := dial(ctx, url)
	if err != nil {
		return 0, 0, 0, err
	}
	defer closeConn(c)
	msg := bytes.Repeat([]byte("x"), size)
	var samples []time.Duration
	end := time.Now().Add(dur)
	for time.Now().Before(end) && len(samples) < 1_000_000 {
		setDeadline(c, time.Now().Add(10*time.Second))
		t0 := time.Now()
		if err := c.WriteMessage(typ, msg); err != nil {
			return 0, 0, 0, err
		}
		// Binary mode may split the echo into several frames.
		got := 0
		for got < size {
			_, b, err := c.ReadMessage()
			if err != nil {
				return 0, 0, 0, fmt.Errorf("after %d round trips: %w", len(samples), err)
			}
			got += len(b)
		}
		if got != size {
			return 0, 0, 0, fmt.Errorf("echo of %d bytes came back as %d", size, got)
		}
		samples = append(samples, time.Since(t0))
	}
	if len(samples) < 10 {
		return 0, 0, 0, errors.New("fewer than 10 round trips")
	}
	slices.Sort(samples)
	q := func(f float64) float64 { return float64(samples[int(f*float64(len(samples)-1))].Nanoseconds()) / 1e3 }
	return q(0.50), q(0.99), len(samples), nil
}

// throughput streams random bytes through cat in binary mode for dur
// (at most maxBytes) while reading the echo, and checks it byte for byte.
// At most window bytes are in flight (sent, not yet echoed), as with an
// interactive client. It returns MB/s of echoed bytes.
func throughput(ctx context.Context, url string, chunk, window int, dur time.Duration, maxBytes int64) (float64, int64, error) {
	// Each message leaves as one frame in one write, as a browser sends
	// it (gorilla's write buffer holds the frame header too), and echoes
	// are read into one buffer: the tool's own cost per MB is what it
	// must do, so that the servers' costs are what the cell compares.
	d := dialer
	d.WriteBufferSize = chunk + 14
	d.ReadBufferSize = max(dialer.ReadBufferSize, chunk)
	c, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return 0, 0, err
	}
	defer closeConn(c)
	r := rand.New(rand.NewPCG(7, 7))
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	at := func(off int64, n int) []byte {
		i := int(off % int64(len(data)))
		if i+n <= len(data) {
			return data[i : i+n]
		}
		return append(append([]byte{}, data[i:]...), data[:n-(len(data)-i)]...)
	}
	deadline := time.Now().Add(dur)
	setDeadline(c, deadline.Add(10*time.Second))
	start := time.Now()
	// One goroutine: top the window up, read one echo message, repeat;
	// after the deadline, read what is still in flight.
	var sent, got int64
	buf := make([]byte, chunk)
	for {
		for time.Now().Before(deadline) && sent < maxBytes && sent-got+int64(chunk) <= int64(max(window, chunk)) {
			if err := c.WriteMessage(websocket.BinaryMessage, at(sent, chunk)); err != nil {
				return 0, got, fmt.Errorf("writing after %d bytes: %w", sent, err)
			}
			sent += int64(chunk)
		}
		if got >= sent {
			break
		}
		_, r, err := c.NextReader()
		if err != nil {
			return 0, got, fmt.Errorf("reading the echo after %d bytes: %w", got, err)
		}
		for {
			n, err := r.Read(buf)
			if n > 0 && !bytes.Equal(buf[:n], at(got, n)) {
				return 0, got, fmt.Errorf("echo differs at byte %d", got)
			}
			got += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, got, fmt.Errorf("reading the echo after %d bytes: %w", got, err)
			}
		}
	}
	return float64(got) / 1e6 / time.Since(start).Seconds(), got, nil
}

// idleMemory opens n sessions of cat (lines mode), each checked with one
// echo, and returns the servers' RSS growth per session in KiB. Programs
// are separate processes and not counted.
func idleMemory(ctx context.Context, p *peer, n int, out map[string]float64) (float64, error) {
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	before := p.rss()
	goBefore, goErr := p.goMemory()
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			closeConn(c)
		}
	}()
	for i := range n {
		c, err := dial(ctx, p.lines)
		if err != nil {
			return 0, fmt.Errorf("session %d: %w", i, err)
		}
		conns = append(conns, c)
		setDeadline(c, time.Now().Add(10*time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("idle")); err != nil {
			return 0, err
		}
		if _, b, err := c.ReadMessage(); err != nil || string(b) != "idle" {
			return 0, fmt.Errorf("session %d echo %q: %v", i, b, err)
		}
	}
	time.Sleep(time.Second)
	after := p.rss()
	if goErr == nil {
		if goAfter, err := p.goMemory(); err == nil {
			out["idle_go_kib"] = float64(goAfter-goBefore) / 1024 / float64(n)
		}
	}
	return float64(after-before) / 1024 / float64(n), nil
}
