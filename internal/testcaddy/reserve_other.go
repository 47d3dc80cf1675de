//go:build !unix

package testcaddy

import "sync"

// Without flock the reservation holds within this process only; Caddy
// does not share ports with SO_REUSEPORT outside Unix.
var reserved sync.Map

func reserve(port int) (unlock func(), ok bool) {
	if _, taken := reserved.LoadOrStore(port, true); taken {
		return nil, false
	}
	return func() { reserved.Delete(port) }, true
}

var buildMu sync.Mutex

// lockFile serialises builds within this process only.
func lockFile(string) (unlock func(), err error) {
	buildMu.Lock()
	return buildMu.Unlock, nil
}
