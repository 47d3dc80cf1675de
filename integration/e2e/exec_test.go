package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// terminalDescribe is the page state shown when a wait fails.
const terminalDescribe = `JSON.stringify({open: window.demoTerminal && demoTerminal.open,
	close: window.demoTerminal && [demoTerminal.closeCode, demoTerminal.closeReason],
	size: window.demoTerminal && [demoTerminal.term.rows, demoTerminal.term.cols],
	resizes: window.demoTerminal && demoTerminal.sentResizes,
	lines: window.demoTerminal && demoTerminal.lines().slice(-12)})`

// typeInTerminal types text into the focused xterm.js through the
// DevTools input domain, as a user's keyboard would: the characters as
// text input, each "\r" as a press of Enter. (chromedp.KeyEvent's
// keyDown-with-text plus char events type every key twice there.)
func typeInTerminal(t *testing.T, b *browser, text string) {
	t.Helper()
	if _, err := eval[bool](b, 5*time.Second, `(demoTerminal.term.focus(), true)`); err != nil {
		t.Fatalf("focusing the terminal: %v", err)
	}
	for i, part := range strings.Split(text, "\r") {
		var acts []chromedp.Action[chromedp.Void]
		if i > 0 {
			acts = append(acts, pressEnter)
		}
		if part != "" {
			acts = append(acts, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: part})
				return err
			}))
		}
		if err := b.run(10*time.Second, acts...); err != nil {
			t.Fatalf("typing %q: %v", text, err)
		}
	}
}

// pressEnter is Enter's keyDown and keyUp without the char event, which
// xterm.js would take as a second Enter.
var pressEnter = chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
	for _, k := range kb.Encode('\r') {
		if k.Type == kb.KeyChar {
			continue
		}
		if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, *k); err != nil {
			return err
		}
	}
	return nil
})

// terminalShowsLine is a JS condition: a line of the terminal's buffer,
// and a rendered row of the page, is exactly line (trailing blanks aside).
func terminalShowsLine(line string) string {
	return fmt.Sprintf(`demoTerminal.lines().some(l => l.trimEnd() === %[1]q) &&
		Array.from(document.querySelectorAll('#terminal .xterm-rows > div'), r => r.textContent.trimEnd()).includes(%[1]q)`, line)
}

// TestXtermThroughExecPTYRunsARealShell opens xterm.js (the demo's
// terminal.js and vendored xterm) in Chromium over wss:// with Caddy's
// internal CA, attached to `exec /bin/sh { mode pty }` (a test-only site:
// a shell for anyone is never a demo). It types `echo $((6*7))` and reads
// 42 from the rendered terminal, then resizes the page and checks that
// `stty size` in the shell prints the terminal's new size.
func TestXtermThroughExecPTYRunsARealShell(t *testing.T) {
	b := newBrowser(t)
	cp := startCaddy(t, `
https://localhost:@HTTPS@ {
	tls internal
	websocket_tunnel /shell {
		exec /bin/sh {
			mode pty
			allow_anonymous
		}
	}
	handle /vendor/* {
		root * @ROOT@/examples/demo
		file_server
	}
	handle /terminal.js {
		root * @ROOT@/examples/demo
		file_server
	}
	handle {
		root * @ROOT@/integration/e2e/testdata/terminal-page
		file_server
	}
}
`, nil)
	if err := b.run(30*time.Second, navigate(cp.URL("/"))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	// Connected, and the shell's prompt arrived.
	b.poll(15*time.Second, `window.demoTerminal && demoTerminal.open && demoTerminal.received > 0`, terminalDescribe)

	typeInTerminal(t, b, "echo $((6*7))\r")
	b.poll(10*time.Second, terminalShowsLine("42"), terminalDescribe)

	// Resize the page: the fit addon resizes xterm.js, terminal.js sends
	// {"type":"resize"} and the shell's terminal takes the new size.
	before, err := eval[[]int](b, 5*time.Second, `[demoTerminal.term.rows, demoTerminal.term.cols]`)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.run(10*time.Second, chromedp.EmulateViewport(640, 360)); err != nil {
		t.Fatalf("resizing the page: %v", err)
	}
	b.poll(10*time.Second, fmt.Sprintf(`demoTerminal.term.rows !== %d && demoTerminal.term.cols !== %d &&
		demoTerminal.sentResizes.length >= 2`, before[0], before[1]), terminalDescribe)
	after, err := eval[[]int](b, 5*time.Second, `[demoTerminal.term.rows, demoTerminal.term.cols]`)
	if err != nil {
		t.Fatal(err)
	}
	typeInTerminal(t, b, "stty size\r")
	b.poll(10*time.Second, terminalShowsLine(fmt.Sprintf("%d %d", after[0], after[1])), terminalDescribe)
	t.Logf("terminal %dx%d -> %dx%d; stty size agreed", before[1], before[0], after[1], after[0])
	b.screenshot("exec-pty-shell.png")

	// The shell's exit ends the session with 1000 and its status.
	typeInTerminal(t, b, "exit 7\r")
	b.poll(10*time.Second, `demoTerminal.closeCode === 1000 && demoTerminal.closeReason === 'exit status 7'`, terminalDescribe)
}

// TestDemoTerminalIsAMenuNotAShell opens the demo (Caddyfile.example
// itself) and checks that its terminal runs examples/demo/terminal.sh: the
// menu answers, and shell syntax typed into it is printed back, never run.
func TestDemoTerminalIsAMenuNotAShell(t *testing.T) {
	b := newBrowser(t)
	cp, _ := startDemo(t)
	if err := b.run(30*time.Second, navigate(cp.URL("/"))); err != nil {
		t.Fatalf("opening the demo: %v", err)
	}
	b.poll(15*time.Second, `window.demoTerminal && demoTerminal.open &&
		demoTerminal.lines().some(l => l.includes('caddyws demo terminal (a menu, not a shell)'))`, terminalDescribe)

	typeInTerminal(t, b, "echo $((6*7))\r")
	b.poll(10*time.Second, terminalShowsLine("not a menu choice: echo $((6*7))"), terminalDescribe)
	typeInTerminal(t, b, "3\r")
	b.poll(10*time.Second, `demoTerminal.lines().some(l => l.startsWith('type a line:'))`, terminalDescribe)
	typeInTerminal(t, b, "$(id) `id` ; id\r")
	b.poll(10*time.Second, terminalShowsLine("you typed: $(id) `id` ; id"), terminalDescribe)
	if ok, _ := eval[bool](b, 5*time.Second, `demoTerminal.lines().some(l => l.trim() === '42' || l.includes('uid='))`); ok {
		t.Fatalf("the demo terminal ran what was typed: %v", must(eval[any](b, 5*time.Second, terminalDescribe)))
	}

	typeInTerminal(t, b, "4\r")
	size, err := eval[[]int](b, 5*time.Second, `[demoTerminal.term.rows, demoTerminal.term.cols]`)
	if err != nil {
		t.Fatal(err)
	}
	b.poll(10*time.Second, terminalShowsLine(fmt.Sprintf("rows columns: %d %d", size[0], size[1])), terminalDescribe)
	b.screenshot("demo-terminal.png")

	typeInTerminal(t, b, "q\r")
	b.poll(10*time.Second, `demoTerminal.closeCode === 1000 && demoTerminal.closeReason === 'exit status 0'`, terminalDescribe)
	if lines, _ := eval[[]string](b, 5*time.Second, `demoTerminal.lines()`); !strings.Contains(strings.Join(lines, "\n"), "bye") {
		t.Errorf("no goodbye from the menu: %q", lines)
	}
}

// must drops the error of an eval used only to describe a failure.
func must[T any](v T, _ error) T { return v }
