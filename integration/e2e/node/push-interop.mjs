// Push interop from Node, run by e2e/push_node_test.go against a real Caddy.
//
//   node push-interop.mjs protocol   the wire protocol over the `ws` package by hand
//   node push-interop.mjs client     client/caddyws-push.js in Node, with `ws` as its WebSocket
//
// Environment: PUSH_WS (wss://.../ws), PUSH_URL (https://.../push), PUSH_KEY,
// ADMIN_URL (http://127.0.0.1:port), CADDY_CA (Caddy's internal root, PEM).
// Prints one JSON summary line and exits 0, or prints the failure and exits 1.
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { PushClient } from '../../../client/caddyws-push.js';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const WS_URL = env('PUSH_WS');
const PUSH_URL = env('PUSH_URL');
const PUSH_KEY = env('PUSH_KEY');
const ADMIN_URL = env('ADMIN_URL');
const ca = fs.readFileSync(env('CADDY_CA'));
// Caddy listens on 127.0.0.1: do not let "localhost" resolve to ::1.
const tlsOpts = { ca, family: 4 };

function request(url, { method = 'POST', headers = {}, body = '' } = {}) {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers, ...(url.startsWith('https:') ? tlsOpts : { family: 4 }), timeout: 10000 }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function publish(obj) {
  const res = await request(PUSH_URL, {
    headers: { Authorization: `Bearer ${PUSH_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(obj),
  });
  assert.equal(res.status, 200, `publish ${JSON.stringify(obj)}: ${res.status} ${res.body}`);
  return JSON.parse(res.body);
}

async function drop(user) {
  const res = await request(ADMIN_URL + '/websocket_push/drop', {
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ hub: 'e2e', user }),
  });
  assert.equal(res.status, 200, `admin drop ${user}: ${res.status} ${res.body}`);
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout waiting for ${what}`)), ms); })])
    .finally(() => clearTimeout(t));
}

// Frames is a queue of parsed frames from one raw ws connection.
class Frames {
  constructor(ws) {
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'server frames are text');
      this.push(JSON.parse(data.toString('utf8')));
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.push(null);
    });
  }
  push(f) {
    const w = this.waiters.shift();
    if (w) w(f); else this.queue.push(f);
  }
  next(what) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return withTimeout(new Promise((r) => this.waiters.push(r)), 10000, what);
  }
  async expect(type) {
    const f = await this.next(type);
    assert.ok(f, `connection closed (${JSON.stringify(this.closed)}) while waiting for ${type}`);
    assert.equal(f.type, type, `got ${JSON.stringify(f)}, want a ${type} frame`);
    return f;
  }
}

async function open() {
  const ws = new WebSocket(WS_URL, tlsOpts);
  const frames = new Frames(ws);
  await withTimeout(new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); }), 10000, 'open');
  return { ws, frames, send: (o) => ws.send(JSON.stringify(o)) };
}

async function protocol() {
  const a = await open();
  a.send({ type: 'connect', token: 'bob-token', events: ['news'] });
  const c = await a.frames.expect('connected');
  assert.equal(c.user, 'bob');

  a.send({ type: 'subscribe', events: ['sports'] });
  await a.frames.expect('subscribed');
  await publish({ event: 'sports', message: { score: '2-1' } });
  let m = await a.frames.expect('message');
  assert.deepEqual([m.event, m.message], ['sports', { score: '2-1' }]);

  a.send({ type: 'unsubscribe', events: ['sports'] });
  await a.frames.expect('unsubscribed');
  await publish({ event: 'sports', message: 'not for bob any more' });
  await publish({ userId: 'bob', event: 'news', message: 'm1' });
  m = await a.frames.expect('message');
  assert.equal(m.message, 'm1', 'the unsubscribed event was not delivered');
  const pos = { stream: m.stream, offset: m.offset, epoch: m.epoch };
  assert.ok(pos.stream && pos.epoch && Number.isInteger(pos.offset), `position in ${JSON.stringify(m)}`);

  await drop('bob');
  const end = await a.frames.next('close');
  assert.equal(end, null);
  assert.equal(a.frames.closed.code, 4004, `close ${JSON.stringify(a.frames.closed)}`);

  await publish({ userId: 'bob', event: 'news', message: 'm2' });
  await publish({ userId: 'bob', event: 'news', message: 'm3' });
  const b = await open();
  b.send({ type: 'connect', token: 'bob-token', events: ['news'], recover: { [pos.stream]: { offset: pos.offset, epoch: pos.epoch } } });
  await b.frames.expect('connected');
  const r = await b.frames.expect('recovered');
  assert.equal(r.recovered, true, JSON.stringify(r));
  const got = [(await b.frames.expect('message')).message, (await b.frames.expect('message')).message];
  assert.deepEqual(got, ['m2', 'm3']);
  await publish({ userId: 'bob', event: 'news', message: 'live' });
  assert.equal((await b.frames.expect('message')).message, 'live');
  b.ws.close(1000);
  return { recovered: got, closeAfterDrop: 4004 };
}

// NodeWebSocket gives the client module a WebSocket that trusts Caddy's CA.
class NodeWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, tlsOpts);
  }
}

async function client() {
  let tokenCalls = 0;
  const seen = [];
  const lifecycle = [];
  let onConnected = () => {};
  let onDisconnected = () => {};
  const push = new PushClient(WS_URL, {
    WebSocket: NodeWebSocket,
    token: async () => { tokenCalls++; return 'bob-token'; },
    events: ['news'],
    // A fixed 2 s pause before reconnecting, so the test publishes inside the gap.
    backoff: { base: 4000, max: 4000 },
    random: () => 0.5,
  });
  push.on('news', (msg, meta) => seen.push([msg, meta.offset]));
  push.on('connected', (i) => { lifecycle.push(['connected', i.user]); onConnected(); });
  push.on('disconnected', (code, reason, info) => { lifecycle.push(['disconnected', code, info.willReconnect]); onDisconnected(); });
  push.on('recovered', (stream) => lifecycle.push(['recovered', stream]));
  push.on('notRecovered', (stream) => lifecycle.push(['notRecovered', stream]));

  const connected = () => new Promise((r) => { onConnected = r; });
  const disconnected = () => new Promise((r) => { onDisconnected = r; });
  const until = async (cond, what) => {
    const t0 = Date.now();
    while (!cond()) {
      if (Date.now() - t0 > 10000) throw new Error(`timeout waiting for ${what}; seen ${JSON.stringify(seen)}, lifecycle ${JSON.stringify(lifecycle)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  let c = connected();
  push.connect();
  await withTimeout(c, 10000, 'connected');
  await publish({ userId: 'bob', event: 'news', message: 'c1' });
  await until(() => seen.length === 1, 'c1');

  const d = disconnected();
  c = connected();
  await drop('bob');
  await withTimeout(d, 10000, 'disconnected');
  await publish({ userId: 'bob', event: 'news', message: 'c2' });
  await publish({ userId: 'bob', event: 'news', message: 'c3' });
  assert.equal(lifecycle.length, 2, `reconnected before the gap's messages were published: the test did not test recovery (${JSON.stringify(lifecycle)})`);
  await withTimeout(c, 10000, 'reconnected');
  await publish({ userId: 'bob', event: 'news', message: 'c4' });
  await until(() => seen.length >= 4, 'c2..c4');
  await new Promise((r) => setTimeout(r, 300)); // would a duplicate arrive?
  push.close();

  assert.deepEqual(seen.map(([m]) => m), ['c1', 'c2', 'c3', 'c4'], 'every message exactly once, in order');
  const offsets = seen.map(([, o]) => o);
  assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `increasing offsets ${offsets}`);
  assert.deepEqual(lifecycle.filter(([k]) => k !== 'recovered'),
    [['connected', 'bob'], ['disconnected', 4004, true], ['connected', 'bob']]);
  assert.ok(lifecycle.some(([k, s]) => k === 'recovered' && s === 'user:bob'), `recovered user:bob in ${JSON.stringify(lifecycle)}`);
  assert.equal(tokenCalls, 2, 'a token fetched for each connect');

  // A saved position from an epoch the server no longer has: the client must
  // say so (notRecovered), adopt the server's position, and go on receiving.
  const stream = 'user:bob';
  const stale = new PushClient(WS_URL, {
    WebSocket: NodeWebSocket, token: 'bob-token', events: ['news'],
    positions: { [stream]: { offset: 1, epoch: 'an-epoch-that-is-gone' } },
  });
  const staleEvents = [];
  const got = [];
  stale.on('notRecovered', (s, info) => staleEvents.push(['notRecovered', s, info.epoch]));
  stale.on('recovered', (s) => staleEvents.push(['recovered', s]));
  stale.on('news', (m) => got.push(m));
  c = new Promise((r) => stale.on('connected', r));
  stale.connect();
  await withTimeout(c, 10000, 'stale client connected');
  await until(() => staleEvents.length > 0, 'a recovery verdict');
  await publish({ userId: 'bob', event: 'news', message: 'after-gap' });
  const t0 = Date.now();
  while (!got.includes('after-gap') && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 20));
  stale.close();
  assert.equal(staleEvents.length, 1, JSON.stringify(staleEvents));
  assert.equal(staleEvents[0][0], 'notRecovered');
  assert.equal(staleEvents[0][1], stream);
  assert.notEqual(staleEvents[0][2], 'an-epoch-that-is-gone');
  assert.deepEqual(got, ['after-gap'], 'live messages flow after notRecovered');
  return { seen, lifecycle, tokenCalls, staleEvents };
}

const mode = process.argv[2];
const scenarios = { protocol, client };
if (!scenarios[mode]) {
  console.error(`usage: node push-interop.mjs ${Object.keys(scenarios).join('|')}`);
  process.exit(2);
}
try {
  const summary = await withTimeout(scenarios[mode](), 60000, mode);
  console.log(JSON.stringify({ ok: true, mode, ...summary }));
  process.exit(0);
} catch (err) {
  console.error(`push interop (${mode}) failed:`, err && err.stack || err);
  process.exit(1);
}
