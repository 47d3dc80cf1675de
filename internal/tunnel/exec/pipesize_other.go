//go:build !linux

package exec

import "os"

// setPipeSize does nothing: only Linux can resize a pipe.
func setPipeSize(*os.File, int) (int64, bool) { return 0, false }
