// An SSE client none of us wrote (npm's `eventsource`), driven by
// interop/sse_test.go against websocket_push. It prints one JSON line:
// {"ok": true|false, "log": [...what happened, in order...], "error": "..."}.
//
//   node sse.mjs native   the package's EventSource alone, token in an
//                         Authorization header. Dropped by the operator
//                         (event close 4004), it reconnects by itself after
//                         the server's retry hint with the Last-Event-ID
//                         header, and the server replays what was published
//                         meanwhile: every message once, in order.
//   node sse.mjs client   client/caddyws-push.js with transport 'sse' and the
//                         package as its EventSource: the same, the client
//                         reconnecting (with last_event_id) after 4004.
//   node sse.mjs refused  the client with a forged token: the package reports
//                         the 401, the client maps it to 4001 and stops.
//
// Environment: PUSH_SSE (the subscribe URL, http:), PUSH_URL (publish),
// PUSH_KEY, ADMIN_URL. The subscriber is alice (token alice-token), on
// event news.
import http from 'node:http';
import { EventSource } from 'eventsource';
import { PushClient } from '../../../client/caddyws-push.js';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const SSE = env('PUSH_SSE');
const log = [];
let finished = false;
const finish = (ok, error = '') => {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify({ ok, log, error }) + '\n', () => process.exit(ok ? 0 : 1));
};
setTimeout(() => finish(false, 'timeout'), 45000);

async function publish(message) {
  const res = await fetch(env('PUSH_URL'), {
    method: 'POST',
    headers: { Authorization: `Bearer ${env('PUSH_KEY')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId: 'alice', event: 'news', message }),
  });
  if (!res.ok) throw new Error(`publish ${message}: ${res.status} ${await res.text()}`);
  log.push('published ' + message);
}

// drop asks Caddy's admin API to close alice's connections (4004). Through
// node:http rather than fetch: the admin API refuses the Sec-Fetch-Mode
// header fetch adds, as it refuses requests from browsers.
function drop() {
  return new Promise((resolve, reject) => {
    const req = http.request(env('ADMIN_URL') + '/websocket_push/drop', { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`admin drop: ${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ hub: 'interop', user: 'alice' }));
  });
}

// withBearer makes the package's EventSource send the token in a header.
const withBearer = (token) => ({
  fetch: (url, init) => fetch(url, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } }),
});

// The steps both modes go through; step() is called after every received
// message, and returns true when the run is complete.
function plan() {
  const got = [];
  return {
    got,
    async onMessage(m) {
      got.push(m);
      log.push('got ' + m);
      if (m === 'n1') {
        await drop();
        log.push('dropped');
      }
      if (m === 'n3') await publish('n4');
      if (m === 'n4') return true;
      return false;
    },
    async onDropped() {
      // Published while no stream is open: only recovery can bring them.
      await publish('n2');
      await publish('n3');
    },
  };
}

async function native() {
  const p = plan();
  const es = new EventSource(SSE + '?event=news', withBearer('alice-token'));
  let connects = 0;
  es.addEventListener('connected', async (ev) => {
    connects++;
    log.push(`connected ${JSON.parse(ev.data).user}`);
    if (connects === 1) await publish('n1');
  });
  es.addEventListener('close', async (ev) => {
    const f = JSON.parse(ev.data);
    log.push(`close ${f.code}`);
    await p.onDropped();
  });
  es.addEventListener('news', async (ev) => {
    const f = JSON.parse(ev.data);
    if (!ev.lastEventId) throw new Error('a message event without an id');
    if (await p.onMessage(f.message)) {
      es.close();
      const want = ['n1', 'n2', 'n3', 'n4'];
      const ok = JSON.stringify(p.got) === JSON.stringify(want) && connects === 2;
      finish(ok, ok ? '' : `got ${JSON.stringify(p.got)} over ${connects} connections, want ${JSON.stringify(want)} over 2`);
    }
  });
  es.addEventListener('error', (ev) => {
    log.push(`error ${ev.code ?? ''} ${ev.message ?? ''}`.trim());
  });
}

async function client() {
  const p = plan();
  const push = new PushClient(SSE, {
    transport: 'sse', EventSource, events: ['news'],
    token: async () => 'alice-token', tokenInQuery: false, eventSourceInit: withBearer,
    // A reconnect well after the publishes of the gap.
    backoff: { base: 1500, max: 1500 }, random: () => 0.99,
  });
  let connects = 0;
  push.on('connected', async ({ user }) => {
    connects++;
    log.push(`connected ${user} via ${push.transport}`);
    if (connects === 1) await publish('n1');
  });
  push.on('disconnected', async (code, reason, { willReconnect }) => {
    log.push(`disconnected ${code} willReconnect=${willReconnect}`);
    if (code === 4004) await p.onDropped();
  });
  push.on('recovered', (stream) => log.push('recovered ' + stream));
  push.on('notRecovered', (stream) => log.push('notRecovered ' + stream));
  push.on('news', async (m) => {
    if (await p.onMessage(m)) {
      push.close();
      const want = ['n1', 'n2', 'n3', 'n4'];
      const ok = JSON.stringify(p.got) === JSON.stringify(want) && connects === 2 && !log.some((l) => l.startsWith('notRecovered'));
      finish(ok, ok ? '' : `got ${JSON.stringify(p.got)} over ${connects} connections, want ${JSON.stringify(want)} over 2`);
    }
  });
  push.connect();
}

async function refused() {
  const push = new PushClient(SSE, { transport: 'sse', EventSource, events: ['news'], token: 'forged' });
  push.on('connected', () => finish(false, 'connected with a forged token'));
  push.on('disconnected', (code, reason, { willReconnect }) => {
    log.push(`disconnected ${code} ${reason} willReconnect=${willReconnect}`);
    const ok = code === 4001 && !willReconnect && push.state === 'closed';
    finish(ok, ok ? '' : 'want 4001 without a reconnect');
  });
  push.connect();
}

const modes = { native, client, refused };
const mode = modes[process.argv[2]];
if (!mode) {
  finish(false, `unknown mode ${process.argv[2]}: want ${Object.keys(modes).join(' or ')}`);
} else {
  mode().catch((err) => finish(false, String(err && err.stack || err)));
}
process.on('unhandledRejection', (err) => finish(false, 'unhandled: ' + String(err && err.stack || err)));
