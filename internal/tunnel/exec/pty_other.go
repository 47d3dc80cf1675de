//go:build !unix

package exec

import (
	"fmt"
	"runtime"
)

// PTYSupported reports whether this system can run a program on a
// pseudo-terminal.
const PTYSupported = false

// ErrNoPTY is returned for mode pty on this system.
var ErrNoPTY = fmt.Errorf("mode pty is not supported on %s", runtime.GOOS)

func (p *Process) startPTY(Config) error { return ErrNoPTY }

// Resize is not supported here.
func (p *Process) Resize(cols, rows uint16) error { return ErrNoPTY }
