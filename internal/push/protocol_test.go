package push

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/caddyws/caddyws/broker"
)

func TestParseClientFrame(t *testing.T) {
	for _, c := range []struct {
		in     string
		typ    string
		events []string
		bad    bool
	}{
		{in: `{"token":"t","event":"news"}`, events: []string{"news"}},
		{in: `{"type":"connect","token":"t","events":["a","b","a"],"event":"c"}`, typ: "connect", events: []string{"c", "a", "b"}},
		{in: `{"type":"subscribe","events":["x"],"recover":{"event:x":{"offset":3,"epoch":"e"}}}`, typ: "subscribe", events: []string{"x"}},
		{in: `{"type":"unsubscribe","event":"x"}`, typ: "unsubscribe", events: []string{"x"}},
		{in: `  {"type":"connect"}  `, typ: "connect"},
		{in: `{"type":"publish"}`, bad: true},
		{in: `[]`, bad: true},
		{in: `"x"`, bad: true},
		{in: ``, bad: true},
		{in: `{"events":[""]}`, bad: true},
		{in: `{"events":"a"}`, bad: true},
		{in: `{"event":"` + strings.Repeat("x", maxNameLen+1) + `"}`, bad: true},
		{in: `{"recover":{"":{"offset":1}}}`, bad: true},
		{in: `{"token":"t"`, bad: true},
	} {
		f, err := ParseClientFrame([]byte(c.in))
		if c.bad {
			if err == nil || !errors.Is(err, ErrBadFrame) {
				t.Errorf("%s: got %+v, %v; want a bad frame error", c.in, f, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if f.Type != c.typ || strings.Join(f.Events, ",") != strings.Join(c.events, ",") {
			t.Errorf("%s: got type %q events %v", c.in, f.Type, f.Events)
		}
	}
}

func TestParsePublishBody(t *testing.T) {
	for _, c := range []struct {
		in, msg string
		bad     bool
	}{
		{in: `{"userId":"alice","event":"news","message":"hello"}`, msg: `"hello"`},
		{in: `{"event":"news","message": { "a" : [1, 2] } }`, msg: `{"a":[1,2]}`},
		{in: `{"userIds":["a","b"],"message":3}`, msg: `3`},
		{in: `{"broadcast":true,"message":[true]}`, msg: `[true]`},
		{in: `{"userId":"a","message":"x","extra":1}`, msg: `"x"`},
		{in: `{"broadcast":true,"event":"e","message":1}`, bad: true},
		{in: `{"userId":"a","userIds":["b"],"message":1}`, bad: true},
		{in: `{"userIds":[""],"message":1}`, bad: true},
		{in: `{"userId":"a"}`, bad: true},
		{in: `{"userId":"a","message":null}`, bad: true},
		{in: `{"message":1}`, bad: true},
		{in: `{"userId":1,"message":1}`, bad: true},
		{in: `not json`, bad: true},
		{in: `{"id":"order-42","userId":"a","message":1}`, msg: `1`},
		{in: `{"id":"` + strings.Repeat("i", 129) + `","userId":"a","message":1}`, bad: true},
		{in: `{"id":"a\nb","userId":"a","message":1}`, bad: true},
		{in: `{"userId":"a","message":"x"`, bad: true},
	} {
		p, err := ParsePublishBody([]byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("%s: accepted %+v", c.in, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(p.Message) != c.msg {
			t.Errorf("%s: message %s, want %s", c.in, p.Message, c.msg)
		}
	}
}

func TestMessageFrameIsValidJSON(t *testing.T) {
	env := &envelope{ID: "i\"d", Event: "ne\u2028ws<", Message: json.RawMessage(`{"a":"b"}`)}
	for _, withPos := range []bool{false, true} {
		b := messageFrame(env, "user:al\"ice", broker.Position{Offset: 7, Epoch: "ep"}, withPos)
		var f map[string]any
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if f["event"] != env.Event || f["id"] != env.ID || (withPos && f["offset"] != 7.0) || (!withPos && f["stream"] != nil) {
			t.Fatalf("frame %s", b)
		}
	}
}

func TestWSFrameHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := wsFrame(opText, bytes.Repeat([]byte("x"), n))
		if f[0] != 0x81 {
			t.Fatalf("first byte %x", f[0])
		}
		var got, hdr int
		switch {
		case f[1] < 126:
			got, hdr = int(f[1]), 2
		case f[1] == 126:
			got, hdr = int(binary.BigEndian.Uint16(f[2:])), 4
		default:
			got, hdr = int(binary.BigEndian.Uint64(f[2:])), 10
		}
		if got != n || len(f) != hdr+n {
			t.Fatalf("n=%d: header says %d, frame %d bytes", n, got, len(f))
		}
	}
	if c := closeFrame(4029, strings.Repeat("é", 100)); len(c) > 2+125 {
		t.Fatalf("close frame payload %d > 125", len(c)-2)
	}
}

// FuzzClientFrame: any input is either refused with ErrBadFrame or yields
// a frame with valid, bounded, deduplicated event names.
func FuzzClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"token":"t","event":"news"}`,
		`{"type":"connect","token":"t","events":["a","b"],"recover":{"user:a":{"offset":1,"epoch":"x"}}}`,
		`{"type":"subscribe","events":["c"]}`,
		`{"type":"unsubscribe","event":"c"}`,
		`{"events":[1]}`, `{"recover":[]}`, `{}`, `[`, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseClientFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range fr.Events {
			if e == "" || len(e) > maxNameLen || seen[e] {
				t.Fatalf("bad event %q in %+v", e, fr)
			}
			seen[e] = true
		}
		switch fr.Type {
		case "", "connect", "subscribe", "unsubscribe":
		default:
			t.Fatalf("type %q accepted", fr.Type)
		}
	})
}

// FuzzPublishBody: accepted bodies have a compact JSON message that a frame
// carries verbatim, and consistent addressing.
func FuzzPublishBody(f *testing.F) {
	for _, s := range []string{
		`{"userId":"alice","event":"news","message":"hello"}`,
		`{"userIds":["a","b"],"event":"e","message":{"x":[1,2,{"y":null}]}}`,
		`{"broadcast":true,"message":1.5e3}`,
		`{"event":"e","message":"\u00e9\ud83d\ude00"}`,
		`{"message":1}`, `{"userId":"a","message":}`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePublishBody(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if !json.Valid(p.Message) {
			t.Fatalf("invalid message %q", p.Message)
		}
		if p.Broadcast == (p.UserID != "" || len(p.UserIDs) > 0 || p.Event != "") {
			t.Fatalf("inconsistent addressing %+v", p)
		}
		fr := messageFrame(&envelope{ID: "x", User: p.UserID, Event: p.Event, Message: p.Message}, "all", broker.Position{}, false)
		var out struct {
			Message json.RawMessage `json:"message"`
		}
		if err := json.Unmarshal(fr, &out); err != nil || !bytes.Equal(out.Message, p.Message) {
			t.Fatalf("frame %s does not carry message %s: %v", fr, p.Message, err)
		}
	})
}

func TestDroppedReasonTellsTheTwo1013sApart(t *testing.T) {
	for _, c := range []struct {
		code   int
		reason string
		want   string
	}{
		{CloseTryAgainLater, "authentication unavailable", "auth_unavailable"},
		{CloseTryAgainLater, reasonHistoryUnavailable, "history_unavailable"},
		{CloseSlow, "history evicted during the replay", "slow"},
		{CloseTooBig, "", "other"},
	} {
		if got := reasonFor(c.code, c.reason); got != c.want {
			t.Errorf("reasonFor(%d, %q) = %q, want %q", c.code, c.reason, got, c.want)
		}
	}
}
