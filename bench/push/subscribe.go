//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// subscriber is one connection of the load: a WebSocket, or an SSE stream
// (stop ends it).
type subscriber struct {
	ws    *websocket.Conn
	stop  func()
	user  string
	event string
}

// fleet holds every subscriber and what they received.
type fleet struct {
	subs      []*subscriber
	received  atomic.Int64
	bytes     atomic.Int64
	lastRecv  atomic.Int64 // unix ns of the latest delivery
	latency   histogram
	closesMu  sync.Mutex
	closes    map[string]int // close code (or read error) -> count
	closing   atomic.Bool    // closeAll started: read errors are the tool's doing
	readersWG sync.WaitGroup
}

// plan says which user and event subscriber i takes: users round-robin,
// and within a user the events round-robin, so every (user, event) pair
// gets N/(U*E) connections when U*E divides N.
func plan(i, users, events int) (user, event string) {
	return "u" + strconv.Itoa(i%users), "e" + strconv.Itoa((i/users)%events)
}

// tokenFor is the token the subscriber sends: the user id itself
// (token_is_user), or an HS256 JWT naming it when a secret is given.
func tokenFor(user string, secret []byte) (string, error) {
	if len(secret) == 0 {
		return user, nil
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
}

// dialAll opens n subscribers with at most par dials in flight, spreading
// the source addresses over srcIPs loopback addresses (127.0.0.1 ...) so
// 10 000+ connections do not exhaust one address's ephemeral ports.
func dialAll(ctx context.Context, url, transport string, n, users, events, srcIPs, h2Streams, par int, secret []byte) (*fleet, error) {
	f := &fleet{subs: make([]*subscriber, n), closes: map[string]int{}}
	var sse *sseClients
	if transport != transportWS {
		sse = newSSEClients(transport, srcIPs, (n+h2Streams-1)/max(1, h2Streams))
	}
	dialers := make([]*websocket.Dialer, srcIPs)
	for k := range dialers {
		nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+k))}}
		dialers[k] = &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   4096,
			WriteBufferSize:  512,
		}
	}
	idx := make(chan int)
	errc := make(chan error, par)
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for i := range idx {
				var err error
				if sse != nil {
					err = f.dialSSE(ctx, sse.clients[i%len(sse.clients)], url, i, users, events, secret)
				} else {
					err = f.dialOne(ctx, dialers[i%srcIPs], url, i, users, events, secret)
				}
				if err != nil {
					errc <- fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case idx <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		f.closeAll()
		return nil, err
	}
	return f, nil
}

func (f *fleet) dialOne(ctx context.Context, d *websocket.Dialer, url string, i, users, events int, secret []byte) error {
	user, event := plan(i, users, events)
	token, err := tokenFor(user, secret)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ws, resp, err := d.DialContext(dctx, url, http.Header{})
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial: %w (HTTP %s)", err, resp.Status)
		}
		return fmt.Errorf("dial: %w", err)
	}
	sub := &subscriber{ws: ws, user: user, event: event}
	first, _ := json.Marshal(map[string]string{"token": token, "event": event})
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, first); err != nil {
		ws.Close()
		return fmt.Errorf("first frame: %w", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return fmt.Errorf("waiting for connected: %w", err)
	}
	if !bytes.Contains(msg, []byte(`"type":"connected"`)) {
		ws.Close()
		return fmt.Errorf("want a connected frame, got %.200s", msg)
	}
	_ = ws.SetReadDeadline(time.Time{})
	f.subs[i] = sub
	f.readersWG.Add(1)
	go f.read(sub)
	return nil
}

var stampKey = []byte(`{"t":`)

var digits = regexp.MustCompile(`[0-9]+`)

// read counts deliveries and records publish-to-receive latency from the
// stamp the publisher put first in the payload, {"t":<unix ns>,...}. It
// reads each frame into one reused buffer and scans bytes rather than
// decoding JSON, to keep the generator's cost per delivery low.
func (f *fleet) read(s *subscriber) {
	defer f.readersWG.Done()
	buf := make([]byte, 0, 1024)
	for {
		_, r, err := s.ws.NextReader()
		if err != nil {
			f.noteClose(err)
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				f.noteClose(err)
				return
			}
		}
		f.delivery(buf)
	}
}

// delivery counts one message frame (WebSocket) or event data (SSE) and
// records its latency; other frames (acks, errors) are not deliveries.
func (f *fleet) delivery(buf []byte) {
	now := time.Now().UnixNano()
	i := bytes.Index(buf, stampKey)
	if i < 0 {
		return
	}
	j := i + len(stampKey)
	var ts int64
	for ; j < len(buf) && buf[j] >= '0' && buf[j] <= '9'; j++ {
		ts = ts*10 + int64(buf[j]-'0')
	}
	f.latency.record(time.Duration(now - ts))
	f.received.Add(1)
	f.bytes.Add(int64(len(buf)))
	for {
		last := f.lastRecv.Load()
		if now <= last || f.lastRecv.CompareAndSwap(last, now) {
			break
		}
	}
}

func (f *fleet) noteClose(err error) {
	key := "read error"
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		key = "close " + strconv.Itoa(ce.Code)
	} else if errors.Is(err, errSSEClose) {
		key = err.Error()
	} else if errors.Is(err, net.ErrClosed) {
		key = "closed by the tool"
	} else if errors.Is(err, io.EOF) {
		key = "end of stream without a close"
	} else if err != nil {
		// Stream resets and the like, with ids and addresses left out so
		// that the same cause counts under one key.
		key = "read error: " + digits.ReplaceAllString(err.Error(), "N")
	}
	f.closesMu.Lock()
	f.closes[key]++
	f.closesMu.Unlock()
}

// closeAll closes every connection (WebSockets with 1000) and waits for
// the readers.
func (f *fleet) closeAll() {
	f.closing.Store(true)
	for _, s := range f.subs {
		if s == nil {
			continue
		}
		if s.stop != nil {
			s.stop()
			continue
		}
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		s.ws.Close()
	}
	done := make(chan struct{})
	go func() { f.readersWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// unexpectedCloses counts connections that ended before the tool closed
// them (slow consumer 4029, pings, errors).
func (f *fleet) unexpectedCloses() map[string]int {
	f.closesMu.Lock()
	defer f.closesMu.Unlock()
	out := map[string]int{}
	for k, v := range f.closes {
		if k != "closed by the tool" && k != "close 1000" {
			out[k] = v
		}
	}
	return out
}
