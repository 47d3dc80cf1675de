package push

import (
	"encoding/binary"
	"unicode/utf8"
)

// Server-to-client WebSocket frames are built here, once per published
// message, and the same bytes are queued to every matching connection: the
// writers never re-encode (RFC 6455 server frames are unmasked, so one
// encoding fits every connection). gorilla still does the handshake and the
// reading; every write goes through the connection's writer goroutine.

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
	finBit  = 0x80
)

// wsFrame returns a complete unfragmented frame carrying payload.
func wsFrame(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = finBit | op
	return append(b, payload...)
}

// textFrame frames a JSON payload as a text message.
func textFrame(payload []byte) []byte { return wsFrame(opText, payload) }

// pingFrame is shared by every keepalive.
var pingFrame = wsFrame(opPing, nil)

// closeFrame builds a close frame with code and a reason cut to fit the
// 125-byte control payload limit without splitting a UTF-8 sequence.
func closeFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return wsFrame(opClose, p)
}
