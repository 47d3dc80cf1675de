//go:build unix && !(darwin || linux || openbsd)

package push

import "golang.org/x/sys/unix"

// writev makes one write of bufs joined, where x/sys has no writev.
func writev(fd int, bufs [][]byte) (int, error) {
	size := 0
	for _, b := range bufs {
		size += len(b)
	}
	bp := getBuf(size)
	out := (*bp)[:0]
	for _, b := range bufs {
		out = append(out, b...)
	}
	n, err := unix.Write(fd, out)
	*bp = out
	putBuf(bp)
	return n, err
}
