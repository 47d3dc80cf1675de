//go:build linux

package main

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestNextEventReadsNamedEventsAndSkipsCommentsAndFields(t *testing.T) {
	stream := "retry: 2000\nid: a~0~\nevent: connected\ndata: {\"type\":\"connected\"}\n\n" +
		": ping\n\n" +
		"event: news\r\nid: u~3~e\r\ndata: {\"t\":1}\r\n\r\n" +
		"data: {\"t\":2}\n\n" +
		"event: close\ndata: {\"type\":\"close\",\"code\":4029}\n\n"
	br := bufio.NewReader(strings.NewReader(stream))
	want := [][2]string{
		{"connected", `{"type":"connected"}`},
		{"news", `{"t":1}`},
		{"", `{"t":2}`},
		{"close", `{"type":"close","code":4029}`},
	}
	for i, w := range want {
		name, data, err := nextEvent(br)
		if err != nil || name != w[0] || string(data) != w[1] {
			t.Fatalf("event %d: %q %q %v, want %q %q", i, name, data, err, w[0], w[1])
		}
	}
	if _, _, err := nextEvent(br); err != io.EOF {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
}

func TestSSEURLMapsTheSchemeAndSetsEventAndToken(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/ws":    "http://127.0.0.1:8080/ws?event=e1&token=u+1",
		"wss://h/ws?a=1":            "https://h/ws?a=1&event=e1&token=u+1",
		"http://h/ws?event=ignored": "http://h/ws?event=e1&token=u+1",
	} {
		got, err := sseURL(in, "e1", "u 1")
		if err != nil || got != want {
			t.Errorf("sseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
