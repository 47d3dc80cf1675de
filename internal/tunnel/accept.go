package tunnel

import (
	"net/http"

	"github.com/gorilla/websocket"
)

// Accept upgrades r to a WebSocket and returns its tunnel, ready for Run
// (or for Fail when the upstream cannot be reached). It is the only way to
// start a Session, so every caller gets the client reader the relay needs:
// one whose fill level lets many small client frames become one upstream
// write, and whose read hook writes gathered frames upstream before a read
// that may block (without it, a ping left in the buffer behind the last
// data frame holds that frame back until the client sends again).
//
// The hijack goes through http.NewResponseController, so w may be a wrapped
// writer (Caddy's are). u.ReadBufferSize is ignored: the client reader is
// Options.ReaderSize bytes. On error the request has been answered by the
// upgrader, or its connection is closed.
func Accept(w http.ResponseWriter, r *http.Request, u *websocket.Upgrader, opts Options) (*Session, error) {
	if u.ReadBufferSize != 0 {
		// gorilla reuses the hijacker's reader only with ReadBufferSize 0.
		c := *u
		c.ReadBufferSize = 0
		u = &c
	}
	opts.setDefaults()
	h := &hijacker{ResponseWriter: w, bufferSize: opts.ReaderSize}
	ws, err := u.Upgrade(h, r, nil)
	if err != nil {
		h.release()
		return nil, err
	}
	return newSession(ws, h, opts), nil
}
