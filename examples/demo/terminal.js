// The demo's web terminal: xterm.js (vendored under /vendor/xterm) attached to
// a WebSocket served by `websocket_tunnel { exec ... { mode pty } }`. In pty
// mode binary messages are terminal bytes both ways, and one text message,
// {"type":"resize","cols":C,"rows":R}, resizes the pseudo-terminal.
// The WebSocket path is the data-ws-path attribute of #terminal.
/* global Terminal, FitAddon */

const el = document.getElementById('terminal');
const badge = document.getElementById('terminal-status');
const wsBase = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;

// What the terminal saw, for the console and the e2e tests.
const state = { open: false, closeCode: null, closeReason: '', sentResizes: [], received: 0 };
window.demoTerminal = state;

function setBadge(s, text) {
  badge.dataset.state = s;
  badge.textContent = text || s;
}

const term = new Terminal({ cursorBlink: true, fontSize: 14, rows: 12, scrollback: 500,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace' });
const fit = new FitAddon.FitAddon();
term.loadAddon(fit);
term.open(el);
fit.fit();
state.term = term;
// The rendered buffer as text lines, trailing blanks trimmed (what a reader sees).
state.lines = () => {
  const b = term.buffer.active;
  const out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  while (out.length && out[out.length - 1] === '') out.pop();
  return out;
};

let ws = null;
const encoder = new TextEncoder();

function sendResize() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const msg = { type: 'resize', cols: term.cols, rows: term.rows };
  state.sentResizes.push(msg);
  ws.send(JSON.stringify(msg));
}

function connect() {
  state.open = false;
  state.closeCode = null;
  setBadge('connecting');
  ws = new WebSocket(wsBase + el.dataset.wsPath);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    state.open = true;
    setBadge('open', 'connected');
    sendResize();
    term.focus();
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      term.write(ev.data);
      return;
    }
    const bytes = new Uint8Array(ev.data);
    state.received += bytes.length;
    term.write(bytes);
  };
  ws.onclose = (ev) => {
    state.open = false;
    state.closeCode = ev.code;
    state.closeReason = ev.reason;
    const why = `${ev.code}${ev.reason ? ': ' + ev.reason : ''}`;
    setBadge(ev.code === 1000 ? 'idle' : 'closed', `ended (${why})`);
    term.write(`\r\n\x1b[2m[session ended: ${why}; press Enter to start again]\x1b[0m\r\n`);
  };
}

term.onData((data) => {
  if (!ws || ws.readyState === WebSocket.CLOSED) {
    if (data === '\r') connect();
    return;
  }
  if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
});
term.onResize(sendResize);
window.addEventListener('resize', () => fit.fit());

connect();
