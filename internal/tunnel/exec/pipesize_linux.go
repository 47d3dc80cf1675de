package exec

import (
	"os"

	"golang.org/x/sys/unix"
)

// setPipeSize sets the capacity of the pipe f to size bytes and returns
// how much it grew. It goes through SyscallConn: Fd would switch f to
// blocking mode and take it off the netpoller.
func setPipeSize(f *os.File, size int) (extra int64, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	var before, after int
	cerr := rc.Control(func(fd uintptr) {
		if before, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err != nil {
			return
		}
		after, err = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size)
	})
	if cerr != nil || err != nil || after <= before {
		return 0, false
	}
	return int64(after - before), true
}
