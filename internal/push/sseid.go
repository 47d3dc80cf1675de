package push

import (
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// The id of an SSE event (docs/push-protocol.md, "Server-Sent Events")
// carries the position of every stream the connection follows, so that the
// Last-Event-ID an EventSource sends on its own when it reconnects recovers
// all of them:
//
//	key~offset~epoch[.key~offset~epoch...]
//
// key is "a" for the broadcast stream, "u" for the user's stream and "e"
// plus 11 base64url characters of a 64-bit FNV-1a hash of the event name
// for an event stream (the client names its events again when it
// reconnects; the hash only has to tell them apart). The epoch is written as
// is when it is 1 to 64 characters of [A-Za-z0-9_-], else as "!" and its
// base64url. Clients treat the id as opaque.

// Bounds of a Last-Event-ID: it is hostile input, and parsed before
// anything else about the request is known.
const (
	maxLastEventID = 16 << 10
	// The server's own ids name every stream a connection follows: up
	// to maxRecoverKeys events, its user's stream and the broadcast one.
	maxLastEventIDKeys = maxRecoverKeys + 2
	maxEpochLen        = 128
)

// errBadLastEventID is wrapped by every parse error of a Last-Event-ID.
var errBadLastEventID = errors.New("bad Last-Event-ID")

// sseKey is a stream's key in an SSE id.
func sseKey(stream string) string {
	switch {
	case stream == streamAll:
		return "a"
	case strings.HasPrefix(stream, "user:"):
		return "u"
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(strings.TrimPrefix(stream, "event:")))
	return "e" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func plainEpoch(e string) bool {
	if e == "" || len(e) > 64 {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// appendSSEPos appends one key~offset~epoch.
func appendSSEPos(b []byte, key string, p Position) []byte {
	b = append(b, key...)
	b = append(b, '~')
	b = strconv.AppendUint(b, p.Offset, 10)
	b = append(b, '~')
	if plainEpoch(p.Epoch) || p.Epoch == "" {
		return append(b, p.Epoch...)
	}
	b = append(b, '!')
	return base64.RawURLEncoding.AppendEncode(b, []byte(p.Epoch))
}

// parseLastEventID decodes an SSE id into positions by key. An empty id is
// no position at all.
func parseLastEventID(s string) (map[string]Position, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > maxLastEventID {
		return nil, fmt.Errorf("%w: longer than %d bytes", errBadLastEventID, maxLastEventID)
	}
	if n := strings.Count(s, ".") + 1; n > maxLastEventIDKeys {
		return nil, fmt.Errorf("%w: more than %d streams", errBadLastEventID, maxLastEventIDKeys)
	}
	out := make(map[string]Position)
	for part := range strings.SplitSeq(s, ".") {
		key, rest, ok1 := strings.Cut(part, "~")
		off, epoch, ok2 := strings.Cut(rest, "~")
		if !ok1 || !ok2 || !validSSEKey(key) {
			return nil, fmt.Errorf("%w: malformed position %.40q", errBadLastEventID, part)
		}
		o, err := strconv.ParseUint(off, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: bad offset %.40q", errBadLastEventID, off)
		}
		if e, ok := strings.CutPrefix(epoch, "!"); ok {
			raw, err := base64.RawURLEncoding.DecodeString(e)
			if err != nil || len(raw) == 0 || len(raw) > maxEpochLen {
				return nil, fmt.Errorf("%w: bad epoch %.40q", errBadLastEventID, epoch)
			}
			epoch = string(raw)
		} else if epoch != "" && !plainEpoch(epoch) {
			return nil, fmt.Errorf("%w: bad epoch %.40q", errBadLastEventID, epoch)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%w: stream %q twice", errBadLastEventID, key)
		}
		out[key] = Position{Offset: o, Epoch: epoch}
	}
	return out, nil
}

func validSSEKey(k string) bool {
	if k == "a" || k == "u" {
		return true
	}
	if len(k) != 12 || k[0] != 'e' {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(k[1:])
	return err == nil
}

// ssePositions is a connection's position on each stream it follows, in a
// stable order, as its SSE writer (the only user) advances them.
type ssePositions struct {
	keys  []string
	pos   map[string]Position
	id    []byte // the encoded id, rebuilt when a position moves
	stale bool
}

func newSSEPositions() *ssePositions {
	return &ssePositions{pos: make(map[string]Position)}
}

// set records stream's position (initial positions, before the writer
// runs).
func (p *ssePositions) set(stream string, pos Position) { p.move(sseKey(stream), pos) }

// advance moves stream to pos: forward within an epoch, to pos whatever its
// offset when the epoch changed.
func (p *ssePositions) advance(stream string, pos Position) {
	k := sseKey(stream)
	if old, ok := p.pos[k]; ok && old.Epoch == pos.Epoch && old.Offset >= pos.Offset {
		return
	}
	p.move(k, pos)
}

func (p *ssePositions) move(k string, pos Position) {
	if _, ok := p.pos[k]; !ok {
		p.keys = append(p.keys, k)
	}
	p.pos[k] = pos
	p.stale = true
}

// appendID appends the id line of the current positions.
func (p *ssePositions) appendID(b []byte) []byte {
	if p.stale {
		p.id = p.id[:0]
		for i, k := range p.keys {
			if i > 0 {
				p.id = append(p.id, '.')
			}
			p.id = appendSSEPos(p.id, k, p.pos[k])
		}
		p.stale = false
	}
	b = append(b, "id: "...)
	b = append(b, p.id...)
	return append(b, '\n')
}
