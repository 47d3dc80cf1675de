package caddyws

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/caddyws/caddyws/internal/testcaddy"
)

// An over-long Last-Event-ID meets two bounds: Caddy's header limit
// (max_header_size, 16 KiB by default) before the request reaches a
// handler, then ours (16 KiB) in the handler. Either way the client gets
// an answer, on every protocol.

const leiSites = `https://localhost:@HTTPS@ {
	tls internal
	websocket_push /sub {
		hub longid
		auth token_is_user
	}
}`

// longLastEventID is a well-formed id of n positions (event streams with
// 128-byte epochs): only a length bound refuses it.
func longLastEventID(n int) string {
	parts := make([]string, n)
	epoch := "!" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfe}, 128))
	for i := range parts {
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], uint64(i))
		parts[i] = "e" + base64.RawURLEncoding.EncodeToString(k[:]) + "~1~" + epoch
	}
	return strings.Join(parts, ".")
}

type leiResult struct {
	proto  string
	status int
	body   string
	err    error
}

// leiGet subscribes with the Last-Event-ID and returns what came back
// within 10 s (a stream that starts counts as an answer: status 200).
func leiGet(c *http.Client, url, id string) leiResult {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", id)
	resp, err := c.Do(req)
	if err != nil {
		return leiResult{err: err}
	}
	defer resp.Body.Close()
	r := leiResult{proto: resp.Proto, status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		r.body = readAllString(resp.Body)
	}
	return r
}

// leiClients returns HTTP/1.1, HTTP/2 and HTTP/3 clients that have reached
// the site.
func leiClients(t *testing.T, base string) map[string]*http.Client {
	t.Helper()
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(func() { h3.Close() })
	cs := map[string]*http.Client{"HTTP/1.1": tlsClient(false), "HTTP/2.0": tlsClient(true), "HTTP/3.0": {Transport: h3}}
	for _, c := range cs {
		waitTLS(t, c, base)
	}
	return cs
}

// wantOurRefusal checks for the handler's 400 on the length of the id.
func wantOurRefusal(t *testing.T, what, proto string, r leiResult) {
	t.Helper()
	if r.err != nil || r.proto != proto || r.status != http.StatusBadRequest {
		t.Errorf("%s over %s: %s %d %v, want 400 over %s", what, proto, r.proto, r.status, r.err, proto)
		return
	}
	reason, _ := decodeJSONBody(t, r.body)["error"].(string)
	if !strings.Contains(reason, "too long") && !strings.Contains(reason, "longer than") {
		t.Errorf("%s over %s: reason %q, want the id's length", what, proto, reason)
	}
}

// TestSSEOverlongLastEventIDIsAnsweredOnEveryProtocol: with Caddy's default
// header limit, an id past our bound but within HTTP/1.1's slack gets our
// 400; headers past the limit get the server's 431 (HTTP/2, HTTP/3), or on
// HTTP/2, for one field longer than the whole limit, Go's server closes the
// connection at once (GOAWAY COMPRESSION_ERROR: curl shows http_code 000).
// With max_header_size raised, the same id reaches the handler on every
// protocol and gets our 400.
func TestSSEOverlongLastEventIDIsAnsweredOnEveryProtocol(t *testing.T) {
	tc, _ := pushCaddy(t, leiSites)
	base := fmt.Sprintf("https://localhost:%d", tc.HTTPSPort)
	url := base + "/sub?token=a"
	id := longLastEventID(95) // 17.8 KiB
	if n := len(id); n <= 17<<10 || n >= 20<<10-1024 {
		t.Fatalf("id of %d bytes, want between 17 KiB and HTTP/1.1's slack", n)
	}

	cs := leiClients(t, base)
	wantOurRefusal(t, "default limit", "HTTP/1.1", leiGet(cs["HTTP/1.1"], url, id))
	// Go's HTTP/2 client refuses, on its own, headers past the limit the
	// server advertised; curl sends them: so does h2Get.
	addr := fmt.Sprintf("localhost:%d", tc.HTTPSPort)
	// Within Go's HTTP/2 field limit (16 KiB + 320) but with the other
	// headers past its list limit: the server's 431.
	if st, code, err := h2Get(addr, "/sub?token=a", strings.Repeat("a", 16600)); err != nil || st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16600-byte id over HTTP/2: %d %v %v, want 431", st, code, err)
	}
	// One field past the whole limit: the HPACK decoder gives up and the
	// server closes the connection with GOAWAY, at once.
	if st, code, err := h2Get(addr, "/sub?token=a", id); err != nil || st != 0 || code != http2.ErrCodeCompression {
		t.Errorf("long id over HTTP/2: %d %v %v, want GOAWAY COMPRESSION_ERROR", st, code, err)
	}
	if r := leiGet(cs["HTTP/3.0"], url, id); r.err != nil || r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("long id over HTTP/3: %s %d %v, want 431", r.proto, r.status, r.err)
	}

	// max_header_size 64KB (JSON: max_header_bytes on each server).
	raw, err := tc.adapt(leiSites)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	for _, s := range servers {
		s.(map[string]any)["max_header_bytes"] = 64 << 10
	}
	raw, _ = json.Marshal(cfg)
	if st, body := tc.Admin(http.MethodPost, "/load", bytes.NewReader(raw)); st != http.StatusOK {
		t.Fatalf("loading max_header_bytes: %d %s", st, body)
	}
	testcaddy.WaitOneListener(t, tc.HTTPSPort)
	cs = leiClients(t, base)
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0", "HTTP/3.0"} {
		wantOurRefusal(t, "64 KiB limit", proto, leiGet(cs[proto], url, id))
	}
	// Below our bound, the same form of id is accepted: it is its length
	// that was refused.
	if r := leiGet(cs["HTTP/2.0"], url, longLastEventID(80)); r.err != nil || r.status != http.StatusOK {
		t.Errorf("15 KiB id over HTTP/2: %s %d %s %v, want the stream", r.proto, r.status, r.body, r.err)
	}
}

// h2Get sends a GET with the Last-Event-ID on a new HTTP/2 connection,
// whatever header limit the server advertises, and returns the response
// status, or the code of the GOAWAY that ended the connection instead.
func h2Get(addr, path, id string) (int, http2.ErrCode, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", addr}, {":path", path},
		{"accept", "text/event-stream"}, {"last-event-id", id}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr := http2.NewFramer(conn, conn)
	// The server may close while the block is still going out: what it
	// answered is read below either way.
	_, _ = io.WriteString(conn, http2.ClientPreface)
	_ = fr.WriteSettings()
	b := block.Bytes()
	for first := true; len(b) > 0 || first; first = false {
		chunk := b[:min(len(b), 16384)]
		b = b[len(chunk):]
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: chunk, EndStream: true, EndHeaders: len(b) == 0})
		} else {
			err = fr.WriteContinuation(1, len(b) == 0, chunk)
		}
		if err != nil {
			break
		}
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, 0, fmt.Errorf("reading the answer: %w", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			return 0, f.ErrCode, nil
		case *http2.RSTStreamFrame:
			return 0, f.ErrCode, fmt.Errorf("stream reset: %v", f.ErrCode)
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				return 0, 0, err
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					var st int
					_, err := fmt.Sscan(hf.Value, &st)
					return st, 0, err
				}
			}
		}
	}
}
