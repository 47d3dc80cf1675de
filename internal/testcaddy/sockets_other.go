//go:build !linux

package testcaddy

// listeningSockets is unknown outside Linux: WaitOneListener returns at once.
func listeningSockets(int) int { return 1 }
