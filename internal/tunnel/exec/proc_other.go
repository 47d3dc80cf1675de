//go:build !unix

package exec

import (
	"os"
	"syscall"
)

// sysProcAttr: there are no process groups to join here.
func sysProcAttr(*Credential, bool) *syscall.SysProcAttr { return nil }

// signalGroup can only kill the program itself on this system: children it
// started keep running (see the Windows notes in the docs).
func signalGroup(p *os.Process, kill bool) {
	_ = p.Kill()
}

func describeState(s *os.ProcessState) string {
	return "exit status " + itoa(s.ExitCode())
}
