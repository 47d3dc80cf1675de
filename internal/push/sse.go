package push

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Server-Sent Events frames: each server frame is one event whose data is
// the same JSON as the WebSocket frame. A message's event is its event name
// (or "message"); control frames are named by their type.

// sseReserved are the names of control events: a message on an event of
// one of these names is sent as "message", so that it cannot pass for a
// control frame.
var sseReserved = map[string]bool{
	"connected": true, "recovered": true, "error": true, "close": true,
	"subscribed": true, "unsubscribed": true,
}

// sseEventName is the event: line of a message on event.
func sseEventName(event string) string {
	if event == "" || sseReserved[event] || len(event) > maxNameLen ||
		bytes.ContainsAny([]byte(event), "\r\n\x00") {
		return "message"
	}
	return event
}

// sseEvent encodes one event; data lines are split at line breaks (the
// JSON the hub writes is compact and has none, but a peer node's might).
func sseEvent(name string, data []byte) []byte {
	b := make([]byte, 0, len(name)+len(data)+18)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, '\n')
	for {
		i := bytes.IndexAny(data, "\r\n")
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, data...)
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, "\n\n"...)
}

var ssePing = []byte(": ping\n\n")

// sseCloseFrame is the last event of a stream the server ends.
func sseCloseFrame(code int, reason string) []byte {
	p, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{"close", code, reason})
	return sseEvent("close", p)
}

// sseTransport writes events to the response of the subscribe request,
// flushing each batch through http.ResponseController (fl: of the response,
// or of SSEOptions.Flush). No write deadline is armed per batch: the hub's
// sweep cuts a write stuck past the write timeout (stuck, abort).
type sseTransport struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	fl    *http.ResponseController
	wt    time.Duration
	retry time.Duration
	// pos is nil when frames carry no position (history off).
	pos     *ssePositions
	started bool
	first   bool // the batch being written is the stream's first
	buf     []byte
	// trying is the composed batch of a non-waiting write in progress.
	trying []byte

	// hijack: on HTTP/1.1 with nothing in front that transforms the body,
	// the first write takes the connection over (see sse_hijack.go).
	hijack bool
	// h1 is set by the first write when it took over; w and rc are then
	// dropped (they hold the request's state). mu orders that with abort.
	h1 *hijackedStream
	mu sync.Mutex
	// since is when the write through w in progress started (0: none).
	since atomic.Int64

	once sync.Once
	done chan struct{} // closed by end: the writer will not write again
	// taken carries the hijacked stream to ServeSSE once, after its head
	// and first events are written.
	taken chan *hijackedStream
}

var _ transport = (*sseTransport)(nil)

func newSSETransport(w, flush http.ResponseWriter, wt, retry time.Duration, withPos, hijack bool) *sseTransport {
	t := &sseTransport{w: w, rc: http.NewResponseController(w), wt: wt, retry: retry, hijack: hijack,
		done: make(chan struct{}), taken: make(chan *hijackedStream, 1)}
	t.fl = t.rc
	if flush != nil {
		t.fl = http.NewResponseController(flush)
	}
	if withPos {
		t.pos = newSSEPositions()
	}
	return t
}

func (t *sseTransport) kind() Transport { return TransportSSE }
func (t *sseTransport) ping() []byte    { return ssePing }
func (t *sseTransport) closeFrame(code int, reason string) []byte {
	return sseCloseFrame(code, reason)
}

func (t *sseTransport) control(typ string, p []byte) []byte {
	ev := sseEvent(typ, p)
	if typ == "connected" {
		// The reconnection delay hint comes with the first event.
		r := make([]byte, 0, len(ev)+16)
		r = append(r, "retry: "...)
		r = strconv.AppendInt(r, t.retry.Milliseconds(), 10)
		r = append(r, '\n')
		return append(r, ev...)
	}
	return ev
}

func (t *sseTransport) write(batch []item) error {
	b := t.compose(batch)
	if t.hijack && t.h1 == nil {
		t.hijack = false
		if hs := takeOver(t.w, t.rc); hs != nil {
			t.mu.Lock()
			t.h1, t.w, t.rc, t.fl = hs, nil, nil, nil
			t.mu.Unlock()
			err := hs.writeBlocking(t.wt, b, true)
			t.keepBuf(b)
			t.taken <- hs
			return err
		}
	}
	if t.h1 != nil {
		err := t.h1.writeBlocking(t.wt, b, false)
		t.keepBuf(b)
		return err
	}
	first := t.first
	t.first = false
	// No deadline per batch: on HTTP/2 each one is a round trip to the
	// connection's goroutine, and one left armed resets an idle stream.
	// The hub's sweep aborts a write in progress for longer than wt
	// instead (stuck).
	t.since.Store(time.Now().UnixNano())
	if first {
		// An explicit status, so that handlers wrapping the response
		// (encode) see a stream at once rather than sniffing a body.
		t.w.WriteHeader(http.StatusOK)
	}
	_, err := t.w.Write(b)
	if err == nil {
		err = t.fl.Flush()
	}
	t.since.Store(0)
	t.keepBuf(b)
	return err
}

// stuck reports a write through the ResponseWriter in progress for longer
// than the write timeout at now.
func (t *sseTransport) stuck(now time.Time) bool {
	s := t.since.Load()
	return s != 0 && now.UnixNano()-s > int64(t.wt)
}

// compose encodes a batch into t.buf: each frame with the id line of the
// positions it moves to.
func (t *sseTransport) compose(batch []item) []byte {
	if !t.started {
		t.first = true
	}
	b := t.buf[:0]
	for i := range batch {
		it := &batch[i]
		if t.pos != nil && (it.stream != "" || !t.started) {
			if it.stream != "" {
				t.pos.advance(it.stream, Position{Offset: it.offset, Epoch: it.epoch})
			}
			b = t.pos.appendID(b)
		}
		t.started = true
		b = append(b, it.data...)
	}
	return b
}

// keepBuf keeps b for the next batch unless it grew large.
func (t *sseTransport) keepBuf(b []byte) {
	if cap(b) <= 64<<10 {
		t.buf = b[:0]
	} else {
		t.buf = nil
	}
}

// prepareTry sets up a non-waiting write only on a hijacked stream over a
// plain socket; through a ResponseWriter every batch goes to the writer
// goroutine.
func (t *sseTransport) prepareTry(batch []item, w *nbWrite) bool {
	if t.h1 == nil || t.h1.raw == nil {
		return false
	}
	t.trying = t.compose(batch)
	t.h1.prepareTry(t.trying, w)
	return true
}

func (t *sseTransport) finishTry(w *nbWrite) (int, error) {
	n, err := t.h1.finishTry(w)
	t.keepBuf(t.trying)
	t.trying = nil
	return n, err
}

// writeRest finishes what tryWrite started, from the stream's own copy
// (the composed events, not the batch's frames).
func (t *sseTransport) writeRest(batch []item, skip int) error {
	if t.h1 == nil {
		return t.write(skipWritten(batch, skip))
	}
	return t.h1.writeRest(t.wt)
}

func (t *sseTransport) end(err error, _ bool) {
	t.once.Do(func() {
		if t.h1 != nil {
			t.h1.end(err, t.wt)
		}
		close(t.done)
	})
}

// abort makes a write in progress fail now; the writer then ends.
func (t *sseTransport) abort() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h1 != nil {
		_ = t.h1.nc.Close()
		return
	}
	_ = t.rc.SetWriteDeadline(time.Now().Add(-time.Second))
}
