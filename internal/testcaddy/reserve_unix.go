//go:build unix

package testcaddy

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// reserve takes an advisory lock on a file named after the port, shared by
// every test process of the machine. The kernel drops the lock when the
// process dies, so a crashed test leaves no port reserved.
func reserve(port int) (unlock func(), ok bool) {
	dir := filepath.Join(os.TempDir(), "caddyws-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return func() {}, true // no reservation possible: the bind check alone
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return func() {}, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// lockFile blocks until it holds an exclusive lock on path.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
