//go:build unix

// Package fileid identifies the file behind a name, so that an editor that
// writes a new file and renames it over the old one is noticed even within
// the same modification-time tick.
package fileid

import (
	"os"
	"syscall"
)

// Of returns the inode of the file, or 0 where the system has none.
func Of(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
