//go:build unix && !(darwin || linux || openbsd)

package push

import "golang.org/x/sys/unix"

// writev makes one write of bufs joined, where x/sys has no writev.
func writev(fd int, bufs [][]byte) (int, error) {
	bp := joinBufs(bufs)
	n, err := unix.Write(fd, *bp)
	putBuf(bp)
	return n, err
}
