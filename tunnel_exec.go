package caddyws

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/internal/tunnel"
	"github.com/caddyws/caddyws/internal/tunnel/exec"
)

// ExecUpstream runs a program for every connection, as the upstream of
// websocket_tunnel (the exec subdirective). The program and its arguments
// are fixed here: nothing a client sends reaches argv. See docs/exec.md.
type ExecUpstream struct {
	// Command is the program and its arguments. A name without a slash is
	// looked up in Caddy's PATH when a connection starts it. Required.
	Command []string `json:"command"`

	// Mode is how WebSocket messages map to the program: "lines" (each
	// text message is one line on stdin, each stdout line one text
	// message: websocketd's protocol), "binary" (raw bytes both ways) or
	// "pty" (the program runs on a pseudo-terminal; binary messages are
	// terminal input and output, and the text message
	// {"type":"resize","cols":C,"rows":R} resizes it). Default: lines.
	Mode string `json:"mode,omitempty"`

	// Env adds NAME VALUE pairs to the program's environment; a value may
	// hold request placeholders ({http.auth.user.id},
	// {http.request.uri.path.1}), replaced per connection, which the
	// program must treat as untrusted input. Default: none.
	Env map[string]string `json:"env,omitempty"`

	// PassHeader lists the request headers passed as HTTP_<NAME>
	// (X-Forwarded-User -> HTTP_X_FORWARDED_USER). Default: none.
	PassHeader []string `json:"pass_header,omitempty"`

	// Dir is the program's working directory. Default: Caddy's.
	Dir string `json:"dir,omitempty"`

	// User and Group are who the program runs as (names or numbers); only
	// a Caddy running as root can switch, otherwise the config is refused.
	// Group defaults to the user's primary group. Default: Caddy's own.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`

	// KillGrace is how long the program has to exit after its client left
	// (stdin closed, SIGHUP and SIGINT to its process group) before the
	// group is killed with SIGKILL. Default: 3s.
	KillGrace caddy.Duration `json:"kill_grace,omitempty"`

	// Stderr is where the program's stderr goes: "log" (Caddy's log, at
	// most 20 lines a second per program, then a count of the lines
	// suppressed) or "client" (mixed into stdout, as 2>&1 would). In pty
	// mode stderr is the terminal. Default: log.
	Stderr string `json:"stderr,omitempty"`

	// MaxLine bounds one output line in lines mode: a longer line closes
	// the WebSocket with 1009. Default: 65536.
	MaxLine int `json:"max_line,omitempty"`

	// AllowAnonymous lets connections start the program without an
	// authenticated user (http.auth.user.id set by basic_auth, a JWT or
	// another auth handler in front). Without it such a connection gets
	// 401. Default: false.
	AllowAnonymous bool `json:"allow_anonymous,omitempty"`

	credential *exec.Credential

	upgraderOnce sync.Once
	upgrader     *websocket.Upgrader
}

// Modes of an exec upstream.
const (
	execLines  = "lines"
	execBinary = "binary"
	execPTY    = "pty"
)

// provision checks the exec upstream and fills in defaults.
func (e *ExecUpstream) provision() error {
	if len(e.Command) == 0 || e.Command[0] == "" {
		return errors.New("exec: a program is required")
	}
	switch e.Mode {
	case "":
		e.Mode = execLines
	case execLines, execBinary:
	case execPTY:
		if !exec.PTYSupported {
			return fmt.Errorf("exec: %w", errNoPTY())
		}
	default:
		return fmt.Errorf("exec: unknown mode %q (want lines, binary or pty)", e.Mode)
	}
	switch e.Stderr {
	case "":
		e.Stderr = "log"
	case "log", "client":
	default:
		return fmt.Errorf("exec: unknown stderr %q (want log or client)", e.Stderr)
	}
	if e.KillGrace < 0 || e.MaxLine < 0 {
		return errors.New("exec: kill_grace and max_line cannot be negative")
	}
	if e.KillGrace == 0 {
		e.KillGrace = caddy.Duration(exec.DefaultKillGrace)
	}
	if e.MaxLine == 0 {
		e.MaxLine = tunnel.DefaultMaxLine
	}
	for name := range e.Env {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return fmt.Errorf("exec: env name %q: must be non-empty without '=' or NUL", name)
		}
	}
	var err error
	if e.credential, err = exec.LookupCredential(e.User, e.Group); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

func errNoPTY() error {
	return fmt.Errorf("mode pty is not supported on %s", runtime.GOOS)
}

// serveExec runs the program of one connection: refusals first (401 without
// a user unless allow_anonymous, 503 over max_connections), then the
// upgrade, the start (1011 when it fails) and the relay.
func (t *Tunnel) serveExec(w http.ResponseWriter, r *http.Request) error {
	e := t.Exec
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	user, _ := repl.GetString("http.auth.user.id")
	if user == "" && !e.AllowAnonymous {
		return t.refuse(w, r, http.StatusUnauthorized, resultUnauthorized, "authentication required")
	}
	if !t.counter.acquire(t.MaxConnections) {
		return t.refuse(w, r, http.StatusServiceUnavailable, resultOverLimit, "too many tunnels")
	}
	defer t.counter.release()

	opts := tunnel.Options{
		BufferSize:   t.BufferSize,
		ReaderSize:   execReaderSize,
		IdleTimeout:  time.Duration(t.IdleTimeout),
		WriteTimeout: time.Duration(t.WriteTimeout),
		Lines:        e.Mode == execLines,
		MaxLine:      e.MaxLine,
	}
	var proc *exec.Process
	if e.Mode == execPTY {
		// Set before the process exists; a resize cannot arrive earlier.
		opts.Control = func(p []byte) error {
			cols, rows, err := exec.ParseResize(p)
			if err != nil {
				return err
			}
			return proc.Resize(cols, rows)
		}
	}
	s, err := tunnel.Accept(w, r, e.upgraderOf(t), opts)
	if err != nil {
		tunnelsTotal.WithLabelValues(resultUpgradeFailed, upstreamExec).Inc()
		if c := t.logger.Check(zap.DebugLevel, "websocket upgrade failed"); c != nil {
			c.Write(zap.String("client", r.RemoteAddr), zap.Error(err))
		}
		return nil
	}
	tunnelsActive.WithLabelValues(upstreamExec).Inc()
	defer tunnelsActive.WithLabelValues(upstreamExec).Dec()
	unregister := sessions.add(s, t)
	defer unregister()

	env := make([][2]string, 0, len(e.Env))
	for _, name := range slices.Sorted(maps.Keys(e.Env)) {
		env = append(env, [2]string{name, repl.ReplaceAll(e.Env[name], "")})
	}
	cfg := exec.Config{
		Command:     e.Command,
		Env:         exec.Environ(exec.Request{HTTP: r, User: user, PassHeaders: e.PassHeader, Env: env}),
		Dir:         e.Dir,
		Credential:  e.credential,
		PTY:         e.Mode == execPTY,
		Cols:        80,
		Rows:        24,
		KillGrace:   time.Duration(e.KillGrace),
		MergeStderr: e.Stderr == "client",
	}
	logger := t.logger.With(zap.String("client", r.RemoteAddr), zap.String("user", user), zap.String("program", e.Command[0]))
	if !cfg.MergeStderr {
		cfg.Stderr = func(line []byte, suppressed int) {
			if line == nil {
				logger.Warn("program stderr suppressed", zap.Int("lines", suppressed))
				return
			}
			logger.Info("program stderr", zap.ByteString("line", line))
		}
	}
	proc, err = exec.Start(cfg)
	if err != nil {
		logger.Error("program failed to start", zap.Error(err))
		res := s.Fail(tunnel.CloseInternalError, "program failed to start")
		tunnelsTotal.WithLabelValues(resultStartFailed, upstreamExec).Inc()
		t.logExec(logger, res, 0, "not started")
		return nil
	}
	res := s.Run(proc.Conn())
	status := proc.Wait(0)
	tunnelsTotal.WithLabelValues(resultClosedBy+res.EndedBy, upstreamExec).Inc()
	tunnelBytes.WithLabelValues(directionUp, upstreamExec).Add(float64(res.BytesUp))
	tunnelBytes.WithLabelValues(directionDown, upstreamExec).Add(float64(res.BytesDown))
	t.logExec(logger, res, proc.Pid(), status)
	return nil
}

// upgraderOf is, in binary and pty modes, the tunnel's upgrader with write
// buffers of buffer_size (taken from a pool only while a frame is written,
// so idle sessions hold none): a full read of the program's output then
// goes out as one write of header and payload. With the tunnel's small
// buffers gorilla writes the header with the first 4 KiB, then the rest:
// two writes and two TCP segments per frame, the largest cost of a bulk
// transfer after the copies themselves. Lines mode keeps the small
// buffers: its messages are lines, usually short, and many chatty sessions
// writing at once should not each take buffer_size bytes.
func (e *ExecUpstream) upgraderOf(t *Tunnel) *websocket.Upgrader {
	if e.Mode == execLines {
		return t.upgrader
	}
	e.upgraderOnce.Do(func() {
		u := *t.upgrader
		u.WriteBufferSize = max(t.BufferSize, u.WriteBufferSize)
		p, _ := execWritePools.LoadOrStore(u.WriteBufferSize, &sync.Pool{})
		u.WriteBufferPool = p.(*sync.Pool)
		e.upgrader = &u
	})
	return e.upgrader
}

// execWritePools holds a write buffer pool per buffer size: gorilla takes
// any buffer a pool gives it as one of its own size.
var execWritePools sync.Map

// execReaderSize is the client reader an exec session holds for its life:
// small, since a thousand idle shells should not pin 64 KiB each.
const execReaderSize = 4 << 10

// logExec writes the one log line of a session.
func (t *Tunnel) logExec(logger *zap.Logger, res tunnel.Result, pid int, status string) {
	logger.Info("exec session closed",
		zap.String("mode", t.Exec.Mode),
		zap.Int("pid", pid),
		zap.String("exit", status),
		zap.Int64("bytes_in", res.BytesUp),
		zap.Int64("bytes_out", res.BytesDown),
		zap.Duration("duration", res.Duration),
		zap.Int("close_code", res.Code),
		zap.String("close_reason", res.Reason),
		zap.String("ended_by", res.EndedBy),
	)
}
