package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
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
// flushing each batch through http.ResponseController. The write deadline
// is armed for the batch and cleared after it: a deadline left armed resets
// an idle HTTP/2 stream when it passes.
type sseTransport struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wt    time.Duration
	retry time.Duration
	// pos is nil when frames carry no position (history off).
	pos     *ssePositions
	started bool
	buf     []byte

	once sync.Once
	done chan struct{} // closed by end: the writer will not write again
}

var _ transport = (*sseTransport)(nil)

func newSSETransport(w http.ResponseWriter, wt, retry time.Duration, withPos bool) *sseTransport {
	t := &sseTransport{w: w, rc: http.NewResponseController(w), wt: wt, retry: retry, done: make(chan struct{})}
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
	b := t.buf[:0]
	first := !t.started
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
	err := t.rc.SetWriteDeadline(time.Now().Add(t.wt))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if first {
		// An explicit status, so that handlers wrapping the response
		// (encode) see a stream at once rather than sniffing a body.
		t.w.WriteHeader(http.StatusOK)
	}
	_, err = t.w.Write(b)
	if err == nil {
		err = t.rc.Flush()
	}
	if cerr := t.rc.SetWriteDeadline(time.Time{}); err == nil && cerr != nil && !errors.Is(cerr, http.ErrNotSupported) {
		err = cerr
	}
	if cap(b) <= 64<<10 {
		t.buf = b[:0]
	} else {
		t.buf = nil
	}
	return err
}

func (t *sseTransport) end(error, bool) { t.once.Do(func() { close(t.done) }) }

// abort makes a write in progress fail now; the writer then ends.
func (t *sseTransport) abort() { _ = t.rc.SetWriteDeadline(time.Now().Add(-time.Second)) }
