//go:build !linux

package exec

import "os"

// waitExited blocks until p has exited and reaps it, holding a thread while
// it waits: these systems have no pidfd for the netpoller, and Go's syscall
// package no waitid with WNOWAIT. The group is killed just after the reap,
// a window in which the group id could in theory be reused.
func waitExited(p *os.Process) (*os.ProcessState, error, bool) {
	st, err := p.Wait()
	return st, err, true
}
