// The demo page: a live push feed (websocket_push), a raw TCP exchange
// (websocket_tunnel) and the same feed through Caddy's reverse_proxy.
// Everything is relative to this page's origin, so the demo works on any port.
import { PushClient } from '/caddyws-push.js';

const $ = (id) => document.getElementById(id);
const wsBase = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;

// What the page saw, for people poking at it from the console and for the e2e tests.
const demo = { received: [], proxied: [], lifecycle: [] };
window.demo = demo;

// ---- websocket_push -------------------------------------------------------

function setBadge(el, state, text) {
  el.dataset.state = state;
  el.textContent = text || state;
}

function textOf(message) {
  if (message && typeof message === 'object' && 'text' in message) return String(message.text);
  return typeof message === 'string' ? message : JSON.stringify(message);
}

function addItem(list, text, metaText, cls, data = {}) {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  Object.assign(li.dataset, data);
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = metaText;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text; // never innerHTML: messages come from anyone who can publish
  li.append(meta, body);
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function stamp() {
  return new Date().toLocaleTimeString();
}

// Positions survive a page reload (sessionStorage), so a reload recovers too.
const saved = JSON.parse(sessionStorage.getItem('caddyws-demo-positions') || '{}');
const push = new PushClient(wsBase + '/push/ws', { events: ['demo'], positions: saved });
demo.push = push;

push.on('demo', (message, meta) => {
  demo.received.push({ id: meta.id, offset: meta.offset, stream: meta.stream, text: textOf(message) });
  addItem($('feed'), textOf(message), meta.offset !== undefined ? `#${meta.offset} ${stamp()}` : stamp(), '',
    { id: meta.id, offset: meta.offset ?? '' });
  sessionStorage.setItem('caddyws-demo-positions', JSON.stringify(push.positions()));
  $('push-positions').textContent = meta.stream ? `${meta.stream} @ ${meta.offset} (epoch ${meta.epoch})` : '';
});
push.on('connected', (info) => {
  demo.lifecycle.push(['connected']);
  setBadge($('push-status'), 'open', 'connected');
});
push.on('disconnected', (code, reason, info) => {
  demo.lifecycle.push(['disconnected', code, reason, info.willReconnect]);
  if (info.willReconnect) {
    setBadge($('push-status'), 'waiting', `reconnecting (${code})`);
  } else {
    setBadge($('push-status'), 'closed', `closed ${code} ${reason}`);
  }
});
push.on('recovered', (stream, info) => {
  demo.lifecycle.push(['recovered', stream, info.offset]);
  addItem($('feed'), `recovered ${stream} up to #${info.offset}`, stamp(), 'notice');
});
push.on('notRecovered', (stream, info) => {
  demo.lifecycle.push(['notRecovered', stream, info.epoch, info.offset]);
  addItem($('feed'), `could not recover ${stream}: messages may have been missed (history lost or too old)`, stamp(), 'notice lost');
});
push.on('error', (e) => {
  demo.lifecycle.push(['error', e.code, e.reason]);
  console.warn('push error', e.code, e.reason);
});
push.connect();
setBadge($('push-status'), 'connecting');

// Recovery, by hand: disconnect, let the user publish from the form (plain
// HTTP, still works), reconnect. The client sends its last position and the
// server replays what this tab missed, exactly once, before live messages.
$('push-offline').addEventListener('click', () => {
  const btn = $('push-offline');
  btn.disabled = true;
  push.close(1000, 'going offline');
  let left = 5;
  const tick = () => {
    if (left === 0) {
      btn.disabled = false;
      push.connect();
      return;
    }
    setBadge($('push-status'), 'waiting', `offline ${left} s: publish something now`);
    left--;
    setTimeout(tick, 1000);
  };
  tick();
});

// publishText posts to this site's form route (see Caddyfile.example for how it is guarded).
async function publishText(text, { quiet = false } = {}) {
  const out = $('publish-result');
  try {
    const res = await fetch('/demo/publish', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ event: 'demo', message: { text } }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
    if (!quiet) out.textContent = `published ${body.id}: delivered to ${body.delivered} connection(s) on this node`;
    return true;
  } catch (err) {
    out.textContent = 'publish failed: ' + err.message;
    return false;
  }
}

$('publish-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('publish-text');
  const text = input.value.trim();
  if (text && await publishText(text)) input.value = '';
});

// The key is Caddyfile.example's default (override it with the PUSH_KEY environment
// variable when starting Caddy); -k because the demo's CA is not installed in the trust store.
$('curl-example').textContent =
  `curl -k -H "Authorization: Bearer \${PUSH_KEY:-caddyws-demo-key}" \\\n` +
  `  -d '{"event":"demo","message":"hello from a backend"}' \\\n` +
  `  ${location.origin}/push/publish`;

// ---- websocket_tunnel -----------------------------------------------------

$('tunnel-request').value = 'GET /hello HTTP/1.1\nHost: 127.0.0.1:9001\nUser-Agent: caddyws-demo\nConnection: close\n\n';

// renderBytes shows received bytes as text with CR and LF made visible.
function renderBytes(pre, bytes) {
  pre.textContent = '';
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  for (const part of text.split(/(\r\n|\n)/)) {
    if (part === '\r\n' || part === '\n') {
      const s = document.createElement('span');
      s.className = 'ctl';
      s.textContent = part === '\r\n' ? '\\r\\n' : '\\n';
      pre.append(s, '\n');
    } else {
      pre.append(part);
    }
  }
}

demo.tunnel = { sent: 0, received: 0, frames: 0, closeCode: null, text: '' };

function runTunnel() {
  const req = $('tunnel-request').value.replace(/\r?\n/g, '\r\n');
  const bytes = new TextEncoder().encode(req);
  const got = [];
  const t = { sent: 0, received: 0, frames: 0, closeCode: null, text: '' };
  demo.tunnel = t;
  const out = $('tunnel-output');
  out.textContent = '';
  setBadge($('tunnel-status'), 'connecting');
  // 'binary' is what noVNC-style clients offer; websocket_tunnel also works with no subprotocol.
  const ws = new WebSocket(wsBase + '/tunnel', ['binary']);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    setBadge($('tunnel-status'), 'open', 'open');
    ws.send(bytes);
    t.sent += bytes.length;
    $('tunnel-counts').textContent = `sent ${t.sent} B`;
  };
  ws.onmessage = (ev) => {
    const chunk = new Uint8Array(ev.data);
    got.push(chunk);
    t.frames++;
    t.received += chunk.length;
    const all = new Uint8Array(t.received);
    let o = 0;
    for (const c of got) { all.set(c, o); o += c.length; }
    t.text = new TextDecoder().decode(all);
    renderBytes(out, all);
    $('tunnel-counts').textContent = `sent ${t.sent} B, received ${t.received} B in ${t.frames} frame(s)`;
  };
  ws.onclose = (ev) => {
    t.closeCode = ev.code;
    // 1000 after the service answered is the happy end: the TCP side closed (Connection: close).
    const why = `${ev.code}${ev.reason ? ': ' + ev.reason : ''}`;
    setBadge($('tunnel-status'), ev.code === 1000 ? 'open' : 'closed', ev.code === 1000 ? `done (${why})` : `closed (${why})`);
  };
}

$('tunnel-send').addEventListener('click', runTunnel);

// ---- reverse_proxy --------------------------------------------------------

const proxied = new PushClient(wsBase + '/proxied/ws', { events: ['demo'] });
demo.proxy = proxied;
proxied.on('demo', (message, meta) => {
  demo.proxied.push({ id: meta.id, offset: meta.offset, text: textOf(message) });
  addItem($('proxy-feed'), textOf(message), meta.offset !== undefined ? `#${meta.offset} ${stamp()}` : stamp());
});
proxied.on('connected', () => setBadge($('proxy-status'), 'open', 'connected'));
proxied.on('disconnected', (code, reason, info) =>
  setBadge($('proxy-status'), info.willReconnect ? 'waiting' : 'closed', `${info.willReconnect ? 'reconnecting' : 'closed'} (${code})`));
proxied.connect();

// Show all three working on first load, without a click: the tunnel's bytes,
// and a greeting published once both feeds are connected (so both show it;
// every other open tab sees this one arrive too).
runTunnel();
const firstConnect = (c) => new Promise((resolve) => { const off = c.on('connected', () => { off(); resolve(); }); });
Promise.race([
  Promise.all([firstConnect(push), firstConnect(proxied)]),
  new Promise((resolve) => setTimeout(resolve, 5000)),
]).then(() => publishText(`a new tab joined at ${stamp()}`, { quiet: true }));
