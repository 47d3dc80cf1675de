//go:build unix

package exec

import (
	"errors"

	"github.com/creack/pty"
)

// PTYSupported reports whether this system can run a program on a
// pseudo-terminal.
const PTYSupported = true

// startPTY starts the program on a new pseudo-terminal, as the leader of its
// own session with the terminal as its controlling terminal.
func (p *Process) startPTY(cfg Config) error {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return err
	}
	if cfg.Cols > 0 && cfg.Rows > 0 {
		if err := pty.Setsize(ptmx, &pty.Winsize{Cols: cfg.Cols, Rows: cfg.Rows}); err != nil {
			closeAll(ptmx, tty)
			return err
		}
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.SysProcAttr = sysProcAttr(cfg.Credential, true)
	err = p.cmd.Start()
	tty.Close()
	if err != nil {
		ptmx.Close()
		return err
	}
	p.stdin, p.stdout = ptmx, ptmx
	return nil
}

// Resize sets the terminal size of a PTY program.
func (p *Process) Resize(cols, rows uint16) error {
	if !p.pty {
		return errors.New("not a terminal")
	}
	return pty.Setsize(p.stdout, &pty.Winsize{Cols: cols, Rows: rows})
}
