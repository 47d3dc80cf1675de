//go:build unix

package caddyws

import "syscall"

// The fan-out and reload tests hold 1000+ WebSockets on both ends of
// loopback (2000+ descriptors): raise the soft limit to the hard one.
func init() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
