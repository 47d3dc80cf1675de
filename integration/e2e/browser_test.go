package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (or $CHROMIUM). Without it the browser
// tests fail, unless E2E_SKIP_BROWSER=1 says the browser could not be
// installed (.ci/run sets it then): they skip, loudly. A plain skip would be
// silent, since `go test ./...` prints nothing for a passing package.
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	bar := strings.Repeat("!", 78)
	if os.Getenv("E2E_SKIP_BROWSER") == "1" {
		msg := bar + "\n" +
			"!!! E2E BROWSER TESTS SKIPPED (E2E_SKIP_BROWSER=1): no chromium on PATH.\n" +
			"!!! noVNC and push were NOT checked in a browser in this run.\n" + bar
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
	t.Fatalf("\n%s\n!!! no chromium on PATH: apt-get install chromium (or set CHROMIUM=/path/to/chrome).\n"+
		"!!! To skip the browser tests where it cannot be installed, set E2E_SKIP_BROWSER=1.\n%s", bar, bar)
	return ""
}

// browser is a headless Chromium tab with a fresh profile; console messages
// of the page are logged to the test.
type browser struct {
	ctx context.Context
	t   *testing.T
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	// Not t.TempDir: Chromium's helper processes may still write into the
	// profile for a moment after the browser exits, which made TempDir's
	// cleanup fail the test ("directory not empty"). Removed with retries
	// once the browser is gone (cleanups run last-registered first).
	profile, err := os.MkdirTemp("", "e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; ; i++ {
			err := os.RemoveAll(profile)
			if err == nil || i == 50 {
				if err != nil {
					t.Logf("leaving the browser profile %s: %v", profile, err)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The internal CA is new for every test and not in the system store.
		chromedp.Flag("ignore-certificate-errors", true),
		// Caddy listens on 127.0.0.1 only; make sure "localhost" goes there.
		chromedp.Flag("host-resolver-rules", "MAP localhost 127.0.0.1"),
		chromedp.WindowSize(1024, 768),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	logs := &syncBuffer{}
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf), chromedp.WithListener(func(ev any) {
		// Runs on the tab's reader goroutine: only collect here.
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				if a.Value != nil {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			fmt.Fprintf(logs, "console.%s: %s\n", e.Type, strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			desc := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				desc += " " + e.ExceptionDetails.Exception.Description
			}
			fmt.Fprintf(logs, "page exception: %s\n", desc)
		}
	}))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		if t.Failed() || testing.Verbose() {
			t.Logf("browser console:\n%s", tail(logs.String(), 8000))
		}
	})
	// Start the browser now (without a deadline: the first Run's context is
	// the browser's lifetime), so a launch failure is reported as such.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium %s: %v", exe, err)
	}
	return &browser{ctx: ctx, t: t}
}

// run runs actions with a deadline.
func (b *browser) run(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// eval evaluates a JS expression (awaiting a promise) with a deadline.
func eval[T any](b *browser, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// poll evaluates the JS expression until it returns true, or fails the test
// with the last value of the describe expression. Real time, never virtual
// time: WebSocket traffic does not advance Chromium's virtual clock.
func (b *browser) poll(timeout time.Duration, expr, describe string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := eval[bool](b, 5*time.Second, expr)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := eval[any](b, 5*time.Second, describe)
			b.t.Fatalf("waited %s for %s (err %v); page state: %v", timeout, expr, err, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves a PNG of the page into the artifacts dir and returns its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(artifactsDir(b.t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("writing %s: %v", p, err)
	}
	b.t.Logf("screenshot: %s", p)
	return p
}

// navigate opens url and waits for the load event.
func navigate(url string) chromedp.Action[chromedp.Void] {
	return chromedp.Navigate(url)
}
