package exec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxControlSize bounds a control message of a terminal session.
const MaxControlSize = 1 << 10

// ParseResize reads a terminal control message, the only text frame a pty
// session accepts: {"type":"resize","cols":C,"rows":R} with C and R from 1
// to 10000. Anything else is an error that says why.
func ParseResize(p []byte) (cols, rows uint16, err error) {
	if len(p) > MaxControlSize {
		return 0, 0, errors.New("control message too long")
	}
	var m struct {
		Type string `json:"type"`
		Cols *int   `json:"cols"`
		Rows *int   `json:"rows"`
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	if err := dec.Decode(&m); err != nil {
		return 0, 0, errors.New("control message is not a JSON object")
	}
	if dec.More() {
		return 0, 0, errors.New("control message has trailing data")
	}
	if m.Type != "resize" {
		return 0, 0, fmt.Errorf("unknown control message type %.32q", m.Type)
	}
	if m.Cols == nil || m.Rows == nil {
		return 0, 0, errors.New("resize needs cols and rows")
	}
	if *m.Cols < 1 || *m.Cols > 10000 || *m.Rows < 1 || *m.Rows > 10000 {
		return 0, 0, errors.New("resize cols and rows must be 1 to 10000")
	}
	return uint16(*m.Cols), uint16(*m.Rows), nil
}
