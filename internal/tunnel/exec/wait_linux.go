package exec

import (
	"os"

	"golang.org/x/sys/unix"
)

// waitExited blocks the calling goroutine, not an OS thread, until p has
// exited: a pidfd polled by the Go netpoller becomes readable at exit. The
// process is left unreaped (waitid with WNOWAIT), so its id stays ours.
// Where pidfds are missing (Linux before 5.3) it falls back to a blocking
// wait.
func waitExited(p *os.Process) (*os.ProcessState, error, bool) {
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		blockingWait(p)
		return nil, nil, false
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		blockingWait(p)
		return nil, nil, false
	}
	exited := func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	}
	if err := rc.Read(exited); err != nil {
		blockingWait(p)
	}
	return nil, nil, false
}

// blockingWait waits without reaping, holding a thread.
func blockingWait(p *os.Process) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
