// Package exec runs a program as the upstream of a tunnel: one process per
// connection, in its own process group, with a minimal environment, stdin
// and stdout (or a pseudo-terminal) joined to the relay through Conn, and a
// bounded end: stdin closed, SIGHUP and SIGINT to the group, SIGKILL to the
// group after the kill grace, and the process always reaped.
package exec

import (
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultKillGrace is how long a program may take to exit after SIGHUP and
// SIGINT before its group is killed.
const DefaultKillGrace = 3 * time.Second

// Config describes the program and how it runs.
type Config struct {
	// Command is the program and its arguments, fixed by the configuration.
	// A name without a slash is looked up in the server's PATH.
	Command []string
	// Env is the whole environment of the program ("NAME=value").
	Env []string
	// Dir is the working directory; empty: the server's.
	Dir string
	// Credential, when set, is the user and group the program runs as.
	Credential *Credential
	// PTY runs the program on a pseudo-terminal of Cols x Rows.
	PTY        bool
	Cols, Rows uint16
	// KillGrace: see DefaultKillGrace.
	KillGrace time.Duration
	// MergeStderr sends stderr where stdout goes. Otherwise stderr lines go
	// to Stderr (nil: discarded), at most StderrRate a second: past it
	// lines are counted, and Stderr gets (nil, count) before the next line
	// let through and at the end. Ignored with PTY (a terminal has one
	// output).
	MergeStderr bool
	Stderr      func(line []byte, suppressed int)
}

// Credential is a numeric user and group.
type Credential struct {
	UID, GID uint32
}

// Process is a running program.
type Process struct {
	cmd    *osexec.Cmd
	stdin  *os.File // our end; the pty master in PTY mode
	stdout *os.File // our end; the same file as stdin in PTY mode
	pty    bool
	grace  time.Duration

	done       chan struct{} // closed once the process is reaped
	stderrDone chan struct{}

	pipes grownPipes
	// ends counts what keeps the pipes alive, the process and our ends:
	// the budget share of grown pipes is given back when both are gone.
	ends      atomic.Int32
	closeOnce sync.Once

	mu          sync.Mutex
	reaped      bool
	terminating bool
	stdinClosed bool
	killTimer   *time.Timer
	state       *os.ProcessState
	waitErr     error
}

// ErrEmptyCommand is returned by Start for a Config without a program.
var ErrEmptyCommand = errors.New("no program to run")

// Start starts the program. On error nothing is left running.
func Start(cfg Config) (*Process, error) {
	if len(cfg.Command) == 0 {
		return nil, ErrEmptyCommand
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	cmd := osexec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Env = cfg.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // never the server's own environment
	}
	cmd.Dir = cfg.Dir
	p := &Process{cmd: cmd, pty: cfg.PTY, grace: cfg.KillGrace, done: make(chan struct{})}
	p.ends.Store(2)
	var err error
	if cfg.PTY {
		err = p.startPTY(cfg)
	} else {
		err = p.startPipes(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Command[0], err)
	}
	go p.watch()
	return p, nil
}

// startPipes starts the program with pipes for stdin, stdout and stderr.
func (p *Process) startPipes(cfg Config) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	var errR, errW *os.File
	switch {
	case cfg.MergeStderr:
		errW = outW
	case cfg.Stderr != nil:
		if errR, errW, err = os.Pipe(); err != nil {
			closeAll(inR, inW, outR, outW)
			return err
		}
	}
	p.cmd.Stdin, p.cmd.Stdout = inR, outW
	if errW != nil {
		p.cmd.Stderr = errW
	}
	p.cmd.SysProcAttr = sysProcAttr(cfg.Credential, false)
	err = p.cmd.Start()
	// The child holds its own copies now.
	closeAll(inR, outW)
	if errR != nil && errW != outW {
		errW.Close()
	}
	if err != nil {
		closeAll(inW, outR, errR)
		return err
	}
	p.stdin, p.stdout = inW, outR
	if errR != nil {
		p.stderrDone = make(chan struct{})
		go func() {
			defer close(p.stderrDone)
			readLines(errR, cfg.Stderr)
			errR.Close()
		}()
	}
	return nil
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// watch learns of the exit, kills what is left of the group while the
// leader is still unreaped (so its id cannot have been reused), then reaps.
func (p *Process) watch() {
	state, err, reaped := waitExited(p.cmd.Process)
	p.mu.Lock()
	signalGroup(p.cmd.Process, true)
	p.reaped = true
	if p.killTimer != nil {
		p.killTimer.Stop()
	}
	p.mu.Unlock()
	if !reaped {
		state, err = p.cmd.Process.Wait()
	}
	if p.stderrDone != nil {
		// Every writer of the stderr pipe is gone: it ends at once, unless
		// a process escaped the group; then give up on it after the grace.
		select {
		case <-p.stderrDone:
		case <-time.After(p.grace):
		}
	}
	p.mu.Lock()
	p.state, p.waitErr = state, err
	p.mu.Unlock()
	// Output still buffered in the pipe is read; a process that left the
	// group and holds stdout open does not hold the session past the grace.
	_ = p.stdout.SetReadDeadline(time.Now().Add(p.grace))
	p.endRef()
	close(p.done)
}

// endRef drops one of the two holders of the pipes.
func (p *Process) endRef() {
	if p.ends.Add(-1) == 0 {
		p.pipes.release()
	}
}

// Done is closed once the program has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// CloseStdin closes the program's stdin (in PTY mode: nothing, the
// terminal stays open for output).
func (p *Process) CloseStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinClosed || p.pty {
		return
	}
	p.stdinClosed = true
	p.stdin.Close()
}

// Terminate ends the program: stdin is closed, the group gets SIGHUP and
// SIGINT, and SIGKILL after the kill grace. It returns at once and may be
// called any number of times.
func (p *Process) Terminate() {
	p.CloseStdin()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped || p.terminating {
		return
	}
	p.terminating = true
	signalGroup(p.cmd.Process, false)
	p.killTimer = time.AfterFunc(p.grace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.reaped {
			signalGroup(p.cmd.Process, true)
		}
	})
}

// Wait terminates the program unless it exits within wait, and returns its
// exit status once it is reaped.
func (p *Process) Wait(wait time.Duration) string {
	select {
	case <-p.done:
	case <-time.After(wait):
		p.Terminate()
		<-p.done
	}
	return p.Status()
}

// Status describes how the program ended ("exit status 3", "signal
// SIGKILL"), or "running".
func (p *Process) Status() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.state != nil:
		return describeState(p.state)
	case p.waitErr != nil:
		return "wait failed"
	default:
		return "running"
	}
}

// ExitCode is the program's exit code, -1 while it runs or when a signal
// ended it.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// Close ends the program and releases our ends of its stdin and stdout.
func (p *Process) Close() error {
	p.Terminate()
	defer p.closeOnce.Do(p.endRef)
	if !p.pty {
		return p.stdout.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinClosed {
		return nil
	}
	p.stdinClosed = true
	return p.stdout.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }
