//go:build unix

package exec

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts the program in its own process group (in PTY mode: its
// own session, with the terminal as controlling terminal) and sets its
// credential.
func sysProcAttr(cred *Credential, pty bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: !pty, Setsid: pty, Setctty: pty}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, NoSetGroups: false, Groups: []uint32{}}
	}
	return a
}

// signalGroup sends SIGKILL, or SIGHUP and SIGINT, to the process group
// led by p. The caller guarantees p is not reaped yet, so its id, which is
// the group's, cannot belong to another process.
func signalGroup(p *os.Process, kill bool) {
	if kill {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		return
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGHUP)
	_ = syscall.Kill(-p.Pid, syscall.SIGINT)
}

func describeState(s *os.ProcessState) string {
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + unix.SignalName(ws.Signal())
	}
	return "exit status " + itoa(s.ExitCode())
}
