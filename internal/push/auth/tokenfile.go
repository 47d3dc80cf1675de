package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyws/caddyws/internal/fileid"

	"go.uber.org/zap"
)

// ParseTokenFile reads the token file format:
//
//	# a comment: a line whose first non-blank character is #
//	<token>: <user>                    any event
//	<token>: <user> <event>,<event>    only these events
//	<token>: <user> -                  no event (user-addressed messages only)
//
// A " #" (space then #) starts a trailing comment. Tokens may not contain
// ':' or blanks; users and events may not contain blanks; events are
// separated by commas (blanks around commas are allowed). A token may appear
// only once. Blank lines, CRLF line ends and a UTF-8 BOM are fine. Errors
// name the line.
func ParseTokenFile(data []byte) (map[string]Identity, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return nil, errors.New("token file is not valid UTF-8")
	}
	table := map[string]Identity{}
	firstSeen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := commentStart(line); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		token, rest, ok := strings.Cut(line, ":")
		token = strings.TrimSpace(token)
		if !ok {
			return nil, fmt.Errorf("line %d: want \"<token>: <user> [events]\", found no ':'", n)
		}
		if token == "" {
			return nil, fmt.Errorf("line %d: empty token", n)
		}
		if strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return nil, fmt.Errorf("line %d: token contains a blank or control character", n)
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("line %d: no user after the token", n)
		}
		id := Identity{User: fields[0]}
		if strings.ContainsFunc(id.User, unicode.IsControl) {
			return nil, fmt.Errorf("line %d: user contains a control character", n)
		}
		if len(fields) > 1 {
			events, err := parseEventList(strings.Join(fields[1:], " "))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			id.Events = events
		}
		if prev, dup := firstSeen[token]; dup {
			return nil, fmt.Errorf("line %d: token already defined on line %d", n, prev)
		}
		firstSeen[token] = n
		table[token] = id
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading token file: %w", err)
	}
	return table, nil
}

// commentStart finds a # at the line start or after a blank.
func commentStart(line string) int {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return i
		}
	}
	return -1
}

func parseEventList(s string) ([]string, error) {
	if s == "-" {
		return []string{}, nil
	}
	var events []string
	for e := range strings.SplitSeq(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("empty event name in %q", s)
		}
		if strings.IndexFunc(e, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return nil, fmt.Errorf("event name %q contains a blank (separate events with commas)", e)
		}
		events = append(events, e)
	}
	return events, nil
}

// TokenFileConfig configures a TokenFile verifier.
type TokenFileConfig struct {
	// Path is the token file (format: see ParseTokenFile).
	Path string
	// CheckInterval is how often, at most, a lookup checks whether the file
	// changed (size, mtime, inode); a change re-reads it. Default: 1s.
	CheckInterval time.Duration
	// Logger reports reloads and reload failures. Default: none.
	Logger *zap.Logger
}

// TokenFile maps tokens to users from a file that is re-read when it
// changes. A change that fails to parse (e.g. caught half-written) keeps the
// last good table and is retried on the next check; a failure is logged
// and kept in Err. Remove tokens by editing the file, not by deleting it: a
// missing file also keeps the last good table.
type TokenFile struct {
	cfg     TokenFileConfig
	table   atomic.Pointer[map[string]Identity]
	mu      sync.Mutex // serialises checks and reloads
	checked atomic.Int64
	stamp   fileStamp
	lastErr atomic.Pointer[error]
	now     func() time.Time
}

type fileStamp struct {
	size, ino uint64
	mtime     time.Time
}

// NewTokenFile loads the file; a missing or malformed file is an error here,
// so a bad config fails at load time.
func NewTokenFile(cfg TokenFileConfig) (*TokenFile, error) {
	if cfg.Path == "" {
		return nil, errors.New("token file: path is required")
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	f := &TokenFile{cfg: cfg, now: time.Now}
	st, err := stampOf(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if err := f.load(st); err != nil {
		return nil, fmt.Errorf("token file %s: %w", cfg.Path, err)
	}
	f.checked.Store(f.now().UnixNano())
	return f, nil
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: uint64(fi.Size()), mtime: fi.ModTime(), ino: fileid.Of(fi)}, nil
}

func (f *TokenFile) load(st fileStamp) error {
	data, err := os.ReadFile(f.cfg.Path)
	if err != nil {
		return err
	}
	table, err := ParseTokenFile(data)
	if err != nil {
		return err
	}
	f.table.Store(&table)
	f.stamp = st
	return nil
}

// refresh re-reads the file when CheckInterval has passed and the file's
// stamp changed. Only one caller checks; the others use the current table.
func (f *TokenFile) refresh() {
	now := f.now()
	if now.UnixNano()-f.checked.Load() < int64(f.cfg.CheckInterval) || !f.mu.TryLock() {
		return
	}
	defer f.mu.Unlock()
	f.checked.Store(now.UnixNano())
	st, err := stampOf(f.cfg.Path)
	if err == nil && st == f.stamp {
		return
	}
	if err == nil {
		err = f.load(st)
	}
	if err != nil {
		err = fmt.Errorf("reloading token file %s (keeping the previous tokens): %w", f.cfg.Path, err)
		if prev := f.lastErr.Load(); prev == nil || (*prev).Error() != err.Error() {
			f.cfg.Logger.Error("token file reload failed", zap.String("path", f.cfg.Path), zap.Error(err))
		}
		f.lastErr.Store(&err)
		return
	}
	f.lastErr.Store(nil)
	f.cfg.Logger.Info("token file reloaded", zap.String("path", f.cfg.Path), zap.Int("tokens", len(*f.table.Load())))
}

// Err returns the last reload failure, nil once a reload succeeded.
func (f *TokenFile) Err() error {
	if p := f.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Verify looks the token up. An unknown token wraps ErrUnauthorized.
func (f *TokenFile) Verify(_ context.Context, token string) (Identity, error) {
	f.refresh()
	if token == "" || len(token) > MaxTokenLength {
		return Identity{}, fmt.Errorf("token file: empty or oversized token: %w", ErrUnauthorized)
	}
	id, ok := (*f.table.Load())[token]
	if !ok {
		return Identity{}, fmt.Errorf("token file: unknown token: %w", ErrUnauthorized)
	}
	if id.Events != nil {
		id.Events = append([]string(nil), id.Events...) // callers may not alter the table
		if id.Events == nil {
			id.Events = []string{}
		}
	}
	return id, nil
}

// Interface guard.
var _ Verifier = (*TokenFile)(nil)
