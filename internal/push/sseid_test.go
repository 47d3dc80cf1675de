package push

import (
	"strings"
	"testing"
)

func TestSSEIDRoundTripsEveryStreamPosition(t *testing.T) {
	p := newSSEPositions()
	p.set(streamAll, Position{Offset: 3, Epoch: "abc-1"})
	p.set(userStream("alice"), Position{Offset: 0, Epoch: ""})
	p.advance(eventStream("news.today~x"), Position{Offset: 9, Epoch: "weird.epoch~!"})
	p.advance(streamAll, Position{Offset: 2, Epoch: "abc-1"}) // behind: kept at 3
	line := string(p.appendID(nil))
	id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "id: ")
	if !ok || strings.ContainsAny(id, "\r\n\x00") {
		t.Fatalf("id line %q", line)
	}
	got, err := parseLastEventID(id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Position{
		"a":                                 {Offset: 3, Epoch: "abc-1"},
		"u":                                 {},
		sseKey(eventStream("news.today~x")): {Offset: 9, Epoch: "weird.epoch~!"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: got %v, want %v", k, got[k], v)
		}
	}
}

func TestLastEventIDRefusesHostileInput(t *testing.T) {
	for name, id := range map[string]string{
		"too long":     strings.Repeat("a~1~e.", maxLastEventID/6+1),
		"too many":     strings.Repeat("a~1~e.", maxLastEventIDKeys) + "u~1~e",
		"no offset":    "a~~e",
		"bad key":      "zz~1~e",
		"negative":     "a~-1~e",
		"overflow":     "a~99999999999999999999~e",
		"bad epoch":    "a~1~has space",
		"bad base64":   "a~1~!***",
		"twice":        "a~1~e.a~2~e",
		"missing part": "a~1",
	} {
		if _, err := parseLastEventID(id); err == nil {
			t.Errorf("%s: %q accepted", name, id)
		}
	}
}

// FuzzLastEventID: any header value is refused cleanly or parsed into
// positions that encode back to an id that parses the same.
func FuzzLastEventID(f *testing.F) {
	f.Add("a~3~abc-1.u~0~.eAAAAAAAAAAA~9~!d2VpcmQ")
	f.Add("")
	f.Add("a~1~e.a~1~e")
	f.Add(strings.Repeat(".", 300))
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseLastEventID(s)
		if err != nil {
			return
		}
		if len(got) > maxLastEventIDKeys {
			t.Fatalf("%d streams", len(got))
		}
		var b []byte
		first := true
		for k, p := range got {
			if !first {
				b = append(b, '.')
			}
			first = false
			b = appendSSEPos(b, k, p)
		}
		again, err := parseLastEventID(string(b))
		if err != nil {
			t.Fatalf("re-encoded %q: %v", b, err)
		}
		for k, p := range got {
			if again[k] != p {
				t.Fatalf("%s: %v then %v", k, p, again[k])
			}
		}
	})
}

func TestSSEEventNamesCannotForgeFramesOrControlEvents(t *testing.T) {
	for in, want := range map[string]string{
		"news": "news", "": "message", "close": "message", "connected": "message",
		"a\nevent: close": "message", "a\rb": "message",
	} {
		if got := sseEventName(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	ev := string(sseEvent("x", []byte("line1\nline2\r\ndata: forged")))
	if ev != "event: x\ndata: line1\ndata: line2\ndata: data: forged\n\n" {
		t.Fatalf("event %q", ev)
	}
}
