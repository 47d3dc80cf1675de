// Package push is the websocket_push engine: a hub that indexes connections
// by user and event, per-connection writers with bounded queues, keepalive,
// history recovery and the wire protocol of docs/push-protocol.md. It knows
// nothing of Caddy; the Caddy glue lives at the repository root.
package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/caddyws/caddyws/broker"
)

// Close codes of the protocol (docs/push-protocol.md).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseUnsupportedData = 1003
	ClosePolicy          = 1008
	CloseTooBig          = 1009
	CloseInternal        = 1011
	CloseTryAgainLater   = 1013
	CloseBadFrame        = 4000
	CloseUnauthorized    = 4001
	CloseForbidden       = 4003
	CloseDropped         = 4004
	CloseAuthTimeout     = 4008
	CloseSlow            = 4029
	CloseTooManyPerUser  = 4030
	CloseTooManyEvents   = 4031
)

// Limits on names, so one frame cannot make the index hold megabytes.
const (
	maxNameLen     = 1024
	maxRecoverKeys = 256
)

// ClientFrame is any frame a subscriber sends. The classic first frame
// {"token":"T","event":"E"} has no type.
type ClientFrame struct {
	Type    string                     `json:"type"`
	Token   string                     `json:"token"`
	Event   string                     `json:"event"`
	Events  []string                   `json:"events"`
	Recover map[string]broker.Position `json:"recover"`
}

// ErrBadFrame is wrapped by every parse error of a client frame or a
// publish body.
var ErrBadFrame = errors.New("bad frame")

// ParseClientFrame decodes and validates a client frame. It returns the
// frame with Event folded into Events (deduplicated, order kept).
func ParseClientFrame(b []byte) (ClientFrame, error) {
	var f ClientFrame
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return f, fmt.Errorf("%w: not a JSON object", ErrBadFrame)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	switch f.Type {
	case "", "connect", "subscribe", "unsubscribe":
	default:
		return f, fmt.Errorf("%w: unknown type %q", ErrBadFrame, f.Type)
	}
	events, err := mergeEvents(f.Event, f.Events)
	if err != nil {
		return f, err
	}
	f.Event, f.Events = "", events
	if len(f.Recover) > maxRecoverKeys {
		return f, fmt.Errorf("%w: too many recover streams", ErrBadFrame)
	}
	for s := range f.Recover {
		if s == "" || len(s) > maxNameLen+8 {
			return f, fmt.Errorf("%w: bad recover stream %q", ErrBadFrame, s)
		}
	}
	return f, nil
}

func mergeEvents(one string, many []string) ([]string, error) {
	if one == "" && len(many) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(many)+1)
	seen := make(map[string]struct{}, len(many)+1)
	add := func(e string) error {
		if e == "" || len(e) > maxNameLen {
			return fmt.Errorf("%w: event names must be 1 to %d bytes", ErrBadFrame, maxNameLen)
		}
		if _, ok := seen[e]; !ok {
			seen[e] = struct{}{}
			out = append(out, e)
		}
		return nil
	}
	if one != "" {
		if err := add(one); err != nil {
			return nil, err
		}
	}
	for _, e := range many {
		if err := add(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PublishRequest is the body of a publish POST.
type PublishRequest struct {
	// ID is the publisher's message id (optional): a retry with the same
	// id within the dedupe window is not delivered twice.
	ID        string          `json:"id"`
	UserID    string          `json:"userId"`
	UserIDs   []string        `json:"userIds"`
	Event     string          `json:"event"`
	Broadcast bool            `json:"broadcast"`
	Message   json.RawMessage `json:"message"`
}

// ParsePublishBody decodes and validates a publish body; the message is
// compacted (it is copied into every frame, so whitespace costs per delivery).
func ParsePublishBody(b []byte) (PublishRequest, error) {
	var p PublishRequest
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return p, fmt.Errorf("%w: body must be a JSON object", ErrBadFrame)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if len(p.Message) == 0 || bytes.Equal(p.Message, []byte("null")) {
		return p, fmt.Errorf("%w: message is required", ErrBadFrame)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, p.Message); err != nil {
		return p, fmt.Errorf("%w: message: %v", ErrBadFrame, err)
	}
	p.Message = buf.Bytes()
	if len(p.ID) > maxIDLen || !printable(p.ID) {
		return p, fmt.Errorf("%w: id must be at most %d printable characters", ErrBadFrame, maxIDLen)
	}
	if len(p.Event) > maxNameLen || len(p.UserID) > maxNameLen {
		return p, fmt.Errorf("%w: names are limited to %d bytes", ErrBadFrame, maxNameLen)
	}
	if p.Broadcast {
		if p.UserID != "" || len(p.UserIDs) > 0 || p.Event != "" {
			return p, fmt.Errorf("%w: broadcast excludes userId, userIds and event", ErrBadFrame)
		}
		return p, nil
	}
	if p.UserID != "" && len(p.UserIDs) > 0 {
		return p, fmt.Errorf("%w: use userId or userIds, not both", ErrBadFrame)
	}
	for _, u := range p.UserIDs {
		if u == "" || len(u) > maxNameLen {
			return p, fmt.Errorf("%w: userIds must be non-empty strings", ErrBadFrame)
		}
	}
	if p.UserID == "" && len(p.UserIDs) == 0 && p.Event == "" {
		return p, fmt.Errorf("%w: address userId, userIds, event or broadcast", ErrBadFrame)
	}
	return p, nil
}

// maxIDLen bounds a publisher's message id.
const maxIDLen = 128

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Targets is how many streams the publish writes to: the distinct userIds,
// or 1.
func (p PublishRequest) Targets() int {
	if len(p.UserIDs) <= 1 {
		return 1
	}
	seen := make(map[string]struct{}, len(p.UserIDs))
	for _, u := range p.UserIDs {
		seen[u] = struct{}{}
	}
	return len(seen)
}

// Stream names (docs/push-protocol.md, "Streams and positions").
const streamAll = "all"

func userStream(u string) string  { return "user:" + u }
func eventStream(e string) string { return "event:" + e }

// envelope is what travels through the broker and its history: the
// addressing a receiving node needs to match its own connections, and the
// payload. The client frame is built on each node, once per message.
type envelope struct {
	ID      string          `json:"id"`
	User    string          `json:"user,omitempty"`
	Event   string          `json:"event,omitempty"`
	Message json.RawMessage `json:"message"`
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// messageFrame is the server's message frame. Position fields are written
// only when withPos (history on).
func messageFrame(env *envelope, stream string, pos broker.Position, withPos bool) []byte {
	b := make([]byte, 0, 64+len(env.ID)+len(env.Event)+len(env.Message)+len(stream)+len(pos.Epoch))
	b = append(b, `{"type":"message","id":`...)
	b = appendString(b, env.ID)
	if env.Event != "" {
		b = append(b, `,"event":`...)
		b = appendString(b, env.Event)
	}
	b = append(b, `,"message":`...)
	b = append(b, env.Message...)
	if withPos {
		b = append(b, `,"stream":`...)
		b = appendString(b, stream)
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, pos.Offset, 10)
		b = append(b, `,"epoch":`...)
		b = appendString(b, pos.Epoch)
	}
	return append(b, '}')
}

func connectedFrame(user string, events []string) []byte {
	b, _ := json.Marshal(struct {
		Type   string   `json:"type"`
		User   string   `json:"user"`
		Events []string `json:"events"`
	}{"connected", user, nonNil(events)})
	return b
}

func ackFrame(typ string, events []string) []byte {
	b, _ := json.Marshal(struct {
		Type   string   `json:"type"`
		Events []string `json:"events"`
	}{typ, nonNil(events)})
	return b
}

func recoveredFrame(stream string, ok bool, pos broker.Position) []byte {
	b, _ := json.Marshal(struct {
		Type      string `json:"type"`
		Stream    string `json:"stream"`
		Recovered bool   `json:"recovered"`
		Epoch     string `json:"epoch"`
		Offset    uint64 `json:"offset"`
	}{"recovered", stream, ok, pos.Epoch, pos.Offset})
	return b
}

func errorFrame(code, reason string) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Code   string `json:"code"`
		Reason string `json:"reason"`
	}{"error", code, reason})
	return b
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
