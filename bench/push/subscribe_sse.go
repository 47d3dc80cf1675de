//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The subscribers' transports (-transport).
const (
	transportWS    = "ws"     // one WebSocket per subscriber
	transportSSE   = "sse"    // one HTTP/1.1 connection per SSE stream
	transportSSEH2 = "sse-h2" // SSE streams multiplexed over HTTP/2 connections (h2c on http://, h2 on https://)
)

// sseClients are the HTTP clients the SSE subscribers share: one per
// source address over HTTP/1.1 (a stream holds its connection), or -h2-conns
// of them over HTTP/2, each multiplexing its share of the streams.
type sseClients struct {
	clients []*http.Client
}

func newSSEClients(transport string, srcIPs, h2Conns int) *sseClients {
	s := &sseClients{}
	n := srcIPs
	if transport == transportSSEH2 {
		n = max(1, h2Conns)
	}
	for k := range n {
		nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+k%max(1, srcIPs)))}}
		tr := &http.Transport{
			DialContext:        nd.DialContext,
			DisableCompression: true,
			// The load runs on loopback against a test CA (tls internal).
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback benchmark
			MaxIdleConnsPerHost: -1,
			ReadBufferSize:      4096,
			WriteBufferSize:     1024,
		}
		if transport == transportSSEH2 {
			p := new(http.Protocols)
			p.SetHTTP2(true)
			p.SetUnencryptedHTTP2(true)
			tr.Protocols = p
			tr.MaxIdleConnsPerHost = 0
		} else {
			p := new(http.Protocols)
			p.SetHTTP1(true)
			tr.Protocols = p
		}
		s.clients = append(s.clients, &http.Client{Transport: tr})
	}
	return s
}

// sseURL is the subscribe URL of an SSE stream: the -ws URL in http(s), the
// event in the query, the token as the query token.
func sseURL(wsURL, event, token string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	q := u.Query()
	q.Set("event", event)
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// dialSSE opens subscriber i as an SSE stream and waits for its connected
// event.
func (f *fleet) dialSSE(ctx context.Context, c *http.Client, wsURL string, i, users, events int, secret []byte) error {
	user, event := plan(i, users, events)
	token, err := tokenFor(user, secret)
	if err != nil {
		return err
	}
	u, err := sseURL(wsURL, event, token)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	timer := time.AfterFunc(15*time.Second, cancel)
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		return fmt.Errorf("GET: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return fmt.Errorf("want an event stream, got %s %q: %.200s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	br := bufio.NewReaderSize(resp.Body, 4096)
	name, data, err := nextEvent(br)
	if err != nil || name != "connected" {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("want a connected event, got %q %.200s (%v)", name, data, err)
	}
	timer.Stop()
	sub := &subscriber{user: user, event: event, stop: func() { cancel(); resp.Body.Close() }}
	f.subs[i] = sub
	f.readersWG.Add(1)
	go f.readSSE(sub, br)
	return nil
}

// readSSE counts the deliveries of one stream, as read does for a WebSocket.
func (f *fleet) readSSE(s *subscriber, br *bufio.Reader) {
	defer f.readersWG.Done()
	for {
		name, data, err := nextEvent(br)
		if err != nil {
			if f.closing.Load() {
				err = net.ErrClosed
			}
			f.noteClose(err)
			return
		}
		if name == "close" {
			code := "?"
			if i := bytes.Index(data, []byte(`"code":`)); i >= 0 {
				j := i + len(`"code":`)
				k := j
				for k < len(data) && data[k] >= '0' && data[k] <= '9' {
					k++
				}
				code = string(data[j:k])
			}
			f.noteClose(fmt.Errorf("%w %s", errSSEClose, code))
			return
		}
		f.delivery(data)
	}
}

var errSSEClose = errors.New("close")

// nextEvent reads one SSE event: its name and its data (the data lines of
// the wire are one line each here). Comments (": ping") and retry/id fields
// are skipped. The returned data aliases the reader's buffer until the
// next call.
func nextEvent(br *bufio.Reader) (name string, data []byte, err error) {
	data = nil
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if data != nil || name != "" {
				return name, data, nil
			}
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("event:")):
			name = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			// One data line per event on this wire; copy it out of the
			// reader's buffer, which the next ReadSlice reuses.
			data = append(data[:0], bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}
