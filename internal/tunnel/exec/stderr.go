package exec

import (
	"bufio"
	"io"
	"time"
)

// StderrRate is how many stderr lines a second one program may log.
const StderrRate = 20

// maxStderrLine splits longer stderr lines.
const maxStderrLine = 4 << 10

// readLines passes the lines of r to sink, rate-limited (see
// Config.Stderr), until r ends.
func readLines(r io.Reader, sink func(line []byte, suppressed int)) {
	br := bufio.NewReaderSize(r, maxStderrLine)
	window := time.Now()
	sent, suppressed := 0, 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if now := time.Now(); now.Sub(window) >= time.Second {
				window, sent = now, 0
				if suppressed > 0 {
					sink(nil, suppressed)
					suppressed = 0
				}
			}
			if sent < StderrRate {
				sent++
				sink(trimEOL(line), 0)
			} else {
				suppressed++
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	if suppressed > 0 {
		sink(nil, suppressed)
	}
}

// trimEOL drops a trailing "\n" or "\r\n".
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}
