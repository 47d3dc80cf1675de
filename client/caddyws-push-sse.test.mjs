// Unit tests of the client's SSE transport and of the 'auto' fallback: node --test client/
//
// A scripted EventSource (and WebSocket) stands in for the network; the test
// plays the server, with the wire of docs/push-protocol.md: `event:` names,
// `id:` positions, data = the WebSocket frame's JSON, `event: close` before the
// server ends a stream. The same client runs against a real Caddy, Node's
// eventsource package and Chromium's EventSource in integration/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PushClient, sseURL, wsURL } from './caddyws-push.js';
import { FakeSocket, fakeTimers, msg, tick } from './fake-network.mjs';

class FakeEventSource {
  static all = [];
  constructor(url, init) {
    this.url = url;
    this.init = init;
    this.readyState = 0;
    this.listeners = new Map();
    this.lastEventId = '';
    FakeEventSource.all.push(this);
  }
  addEventListener(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, []);
    this.listeners.get(name).push(fn);
  }
  close() { this.readyState = 2; this.closed = true; }
  // server side
  query() { return new URL(this.url).searchParams; }
  open() { this.readyState = 1; this.onopen?.({ type: 'open' }); }
  event(name, data, id) {
    if (id !== undefined) this.lastEventId = id;
    const ev = { type: name, data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId: this.lastEventId };
    for (const fn of this.listeners.get(name) || []) fn(ev);
    return (this.listeners.get(name) || []).length;
  }
  connected(user = 'u', events = []) { this.open(); this.event('connected', { type: 'connected', user, events }); }
  fail(extra = {}) {
    // What an EventSource does when the stream breaks: it reconnects on its own
    // (readyState 0) unless the response was refused.
    this.readyState = extra.code ? 2 : 0;
    for (const fn of this.listeners.get('error') || []) fn({ type: 'error', ...extra });
  }
}

function newClient(opts = {}) {
  FakeEventSource.all = [];
  FakeSocket.all = [];
  const timers = fakeTimers();
  const c = new PushClient('wss://x/ws?site=1', {
    transport: 'sse', EventSource: FakeEventSource, WebSocket: FakeSocket,
    random: () => 0.5, connectTimeout: 0, network: null, ...timers, ...opts,
  });
  return { c, timers, es: () => FakeEventSource.all[FakeEventSource.all.length - 1], ws: () => FakeSocket.all[FakeSocket.all.length - 1] };
}

test('sseURL and wsURL map the schemes and carry events, token and last event id', () => {
  assert.equal(sseURL('wss://h/ws?a=1', { events: ['x', 'y'], token: 't k', lastEventId: 'p.q' }),
    'https://h/ws?a=1&event=x&event=y&token=t+k&last_event_id=p.q');
  assert.equal(sseURL('ws://h:8080/ws'), 'http://h:8080/ws');
  assert.equal(sseURL('https://h/ws', { events: [] }), 'https://h/ws');
  assert.equal(wsURL('https://h/ws'), 'wss://h/ws');
  assert.equal(wsURL('http://h/ws'), 'ws://h/ws');
  assert.equal(wsURL('wss://h/ws'), 'wss://h/ws');
});

test('an unknown transport or a missing EventSource is refused at construction', () => {
  assert.throws(() => new PushClient('wss://x/ws', { transport: 'sse+ws', WebSocket: FakeSocket }), /transport must be one of/);
  assert.throws(() => new PushClient('wss://x/ws', { transport: 'sse', WebSocket: FakeSocket, EventSource: null }), /no EventSource/);
});

test('sse: the stream URL carries events and token, and server events reach the handlers', async () => {
  const { c, es } = newClient({ token: 'T1', events: ['news', 'alerts'] });
  const got = [];
  c.on('connected', (i) => got.push(['connected', i.user, i.events]));
  c.on('news', (m, meta) => got.push(['news', m, meta.offset]));
  c.on('*', (m, meta) => got.push(['*', m, meta.event]));
  c.connect();
  await tick();
  assert.equal(c.transport, 'sse');
  const q = es().query();
  assert.deepEqual(q.getAll('event'), ['news', 'alerts']);
  assert.equal(q.get('token'), 'T1');
  assert.equal(q.get('site'), '1');
  assert.equal(q.get('last_event_id'), null);
  assert.ok(es().url.startsWith('https://x/ws?'));
  es().connected('alice', ['news', 'alerts']);
  assert.equal(c.state, 'open');
  assert.equal(c.user, 'alice');
  assert.ok(es().event('news', msg('event:news', 1, 'n1'), 'P1') > 0, 'the client listens to the event by name');
  // A message without an event is named by its type.
  es().event('message', { type: 'message', id: 'm0', message: 'plain' }, 'P2');
  assert.deepEqual(got, [
    ['connected', 'alice', ['news', 'alerts']],
    ['news', 'n1', 1], ['*', 'n1', 'news'],
    ['*', 'plain', undefined],
  ]);
  assert.equal(c.lastEventId(), 'P2');
});

test('sse: events named like the protocol ones are dispatched by the frame type', async () => {
  const { c, es, timers } = newClient({ events: ['close', 'connected'] });
  const got = [];
  c.on('*', (m, meta) => got.push([m, meta.event]));
  c.connect();
  await tick();
  es().connected();
  es().event('close', { type: 'message', id: '1', event: 'close', message: 'not a close' }, 'A');
  es().event('connected', { type: 'message', id: '2', event: 'connected', message: 'not a connect' }, 'B');
  es().event('error', { type: 'message', id: '3', event: 'error', message: 'not a failure' }, 'C');
  assert.deepEqual(got, [['not a close', 'close'], ['not a connect', 'connected'], ['not a failure', 'error']]);
  assert.equal(es().closed, undefined, 'the stream is still open');
  assert.equal(c.state, 'open');
  assert.equal(timers.pending.length, 0);
});

test('sse: a handler added while the stream is open gets its events', async () => {
  const { c, es } = newClient();
  c.connect();
  await tick();
  es().connected('u', []);
  const got = [];
  c.on('late', (m) => got.push(m));
  es().event('late', msg('user:u', 1, 'x', { event: 'late' }), 'L1');
  assert.deepEqual(got, ['x']);
});

test('sse: a broken stream is reopened by the client with back-off and last_event_id, never by the EventSource', async () => {
  const { c, es, timers } = newClient({ events: ['news'] });
  const got = [];
  const disc = [];
  c.on('news', (m) => got.push(m));
  c.on('disconnected', (code, reason, i) => disc.push([code, reason, i.willReconnect]));
  c.connect();
  await tick();
  es().connected();
  es().event('news', msg('event:news', 1, 'm1'), 'event:news~1~e1');
  es().event('news', msg('event:news', 2, 'm2'), 'event:news~2~e1');
  const first = es();
  first.fail();
  assert.equal(first.closed, true, 'the EventSource must not reconnect by itself (no jitter, no close-code policy)');
  assert.deepEqual(disc, [[1006, 'stream ended', true]]);
  assert.equal(timers.pending.length, 1);
  await timers.fire();
  assert.notEqual(es(), first);
  assert.equal(es().query().get('last_event_id'), 'event:news~2~e1');
  es().connected();
  // The server replays from the position; a duplicate is dropped.
  es().event('news', msg('event:news', 2, 'm2'), 'event:news~2~e1');
  es().event('news', msg('event:news', 3, 'm3'), 'event:news~3~e1');
  assert.deepEqual(got, ['m1', 'm2', 'm3']);
});

test('sse: the close event decides like a WebSocket close code', async () => {
  for (const [code, again] of [[4029, true], [4004, true], [1001, true], [4003, false], [4031, false], [4000, false]]) {
    const { c, es, timers } = newClient({ token: 'static', events: ['news'] });
    const disc = [];
    c.on('disconnected', (code, reason, i) => disc.push([code, reason, i.willReconnect]));
    c.connect();
    await tick();
    es().connected();
    es().event('news', msg('event:news', 5, 'x'), 'ID5');
    es().event('close', { type: 'close', code, reason: 'why' });
    assert.equal(es().closed, true, `${code}: the stream is closed by the client`);
    es().fail(); // the server's EOF after the close event changes nothing
    assert.deepEqual(disc, [[code, 'why', again]], `close ${code}`);
    assert.equal(timers.pending.length, again ? 1 : 0, `close ${code}`);
    assert.equal(c.state, again ? 'waiting' : 'closed');
    if (again) {
      await timers.fire();
      assert.equal(es().query().get('last_event_id'), 'ID5');
    }
  }
});

test('sse: a refusal with an HTTP status (Node eventsource) maps to the close codes', async () => {
  const { c, es, timers } = newClient({ token: 'static' });
  const disc = [];
  c.on('disconnected', (code, reason, i) => disc.push([code, reason, i.willReconnect]));
  c.connect();
  await tick();
  es().fail({ code: 401, message: 'Non-200 status code (401)' });
  assert.deepEqual(disc, [[4001, 'HTTP 401: Non-200 status code (401)', false]]);
  assert.equal(timers.pending.length, 0);

  const second = newClient({ token: 'static' });
  const d2 = [];
  second.c.on('disconnected', (code, reason, i) => d2.push([code, i.willReconnect]));
  second.c.connect();
  await tick();
  second.es().fail({ code: 503 });
  assert.deepEqual(d2, [[1013, true]]);
});

test('sse: with a token function, one 401 retries at once with a fresh token in the URL', async () => {
  let n = 0;
  const { c, es, timers } = newClient({ token: () => `tok${++n}` });
  c.connect();
  await tick();
  assert.equal(es().query().get('token'), 'tok1');
  es().fail({ code: 401 });
  assert.equal(await timers.fire(), 0);
  assert.equal(es().query().get('token'), 'tok2');
  es().fail({ code: 401 });
  assert.equal(timers.pending.length, 0, 'two 401 in a row stop');
});

test('sse: tokenInQuery false keeps the token out of the URL and hands it to eventSourceInit', async () => {
  const seen = [];
  const { c, es } = newClient({
    token: 'secret', tokenInQuery: false,
    eventSourceInit: (token) => { seen.push(token); return { withCredentials: true, headers: { Authorization: 'Bearer ' + token } }; },
  });
  c.connect();
  await tick();
  assert.equal(es().query().get('token'), null);
  assert.deepEqual(seen, ['secret']);
  assert.equal(es().init.headers.Authorization, 'Bearer secret');
});

test('sse: recovered:false is reported as notRecovered and the new epoch adopted', async () => {
  const { c, es } = newClient({ events: ['news'], lastEventId: 'saved-by-the-page' });
  const lost = [];
  const got = [];
  c.on('notRecovered', (s, i) => lost.push([s, i.epoch, i.offset]));
  c.on('news', (m) => got.push(m));
  c.connect();
  await tick();
  assert.equal(es().query().get('last_event_id'), 'saved-by-the-page');
  es().connected();
  es().event('recovered', { type: 'recovered', stream: 'event:news', recovered: false, epoch: 'e2', offset: 0 });
  es().event('news', msg('event:news', 1, 'fresh', { epoch: 'e2' }), 'N1');
  assert.deepEqual(lost, [['event:news', 'e2', 0]]);
  assert.deepEqual(got, ['fresh']);
});

test('sse: subscribe and unsubscribe reopen the stream once, from the last event id', async () => {
  const { c, es, timers } = newClient({ events: ['a'] });
  const connects = [];
  c.on('connected', (i) => connects.push(i.events));
  c.connect();
  await tick();
  es().connected('u', ['a']);
  es().event('a', msg('event:a', 1, 'x', { event: 'a' }), 'POS1');
  const first = es();
  c.subscribe('b');
  c.subscribe('c');
  c.unsubscribe('a');
  await tick();
  assert.equal(first.closed, true);
  assert.equal(FakeEventSource.all.length, 2, 'one new stream for three changes');
  assert.deepEqual(es().query().getAll('event'), ['b', 'c']);
  assert.equal(es().query().get('last_event_id'), 'POS1');
  assert.equal(timers.pending.length, 0, 'no back-off for a resubscription');
  es().connected('u', ['b', 'c']);
  assert.deepEqual(connects, [['a'], ['b', 'c']]);
});

test('sse: no response within connectTimeout counts as a failed attempt', async () => {
  const { c, es, timers } = newClient({ connectTimeout: 700 });
  const disc = [];
  c.on('disconnected', (code, reason, i) => disc.push([code, reason, i.willReconnect]));
  c.connect();
  await tick();
  await timers.fire(700);
  assert.equal(es().closed, true);
  assert.deepEqual(disc, [[1006, 'no SSE response within 700 ms', true]]);
});

test('close() closes the EventSource and nothing reconnects', async () => {
  const { c, es, timers } = newClient();
  c.connect();
  await tick();
  es().connected();
  const s = es();
  c.close();
  assert.equal(s.closed, true);
  s.fail();
  assert.equal(timers.pending.length, 0);
  assert.equal(c.state, 'closed');
});

// --- auto -------------------------------------------------------------------

function autoClient(opts = {}) {
  return newClient({ transport: 'auto', ...opts });
}

test('auto: a WebSocket that cannot be opened falls back to SSE at once and says why', async () => {
  const { c, ws, es, timers } = autoClient({ events: ['news'] });
  const fallbacks = [];
  const disc = [];
  const got = [];
  c.on('fallback', (f) => fallbacks.push(f));
  c.on('disconnected', (code) => disc.push(code));
  c.on('news', (m) => got.push(m));
  c.connect();
  await tick();
  assert.equal(c.transport, 'websocket');
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(ws().url, 'wss://x/ws?site=1');
  ws().drop(1006); // e.g. a proxy answered the upgrade with 403
  await tick();
  assert.deepEqual(fallbacks, [{ from: 'websocket', to: 'sse', code: 1006, reason: 'the WebSocket could not be opened (1006)' }]);
  assert.deepEqual(disc, [], 'never connected: no disconnected event');
  assert.equal(timers.pending.length, 0, 'no back-off before the fallback');
  assert.equal(c.transport, 'sse');
  assert.equal(FakeEventSource.all.length, 1);
  es().connected();
  es().event('news', msg('event:news', 1, 'via sse'), 'S1');
  assert.deepEqual(got, ['via sse']);
  // Once SSE worked, a broken stream is reopened as SSE.
  es().fail();
  await timers.fire();
  assert.equal(FakeEventSource.all.length, 2);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(es().query().get('last_event_id'), 'S1');
});

test('auto: a WebSocket that opens and is then refused (4001) does not fall back', async () => {
  const { c, ws, timers } = autoClient({ token: 'static' });
  const fallbacks = [];
  const disc = [];
  c.on('fallback', (f) => fallbacks.push(f));
  c.on('disconnected', (code, reason, i) => disc.push([code, i.willReconnect]));
  c.connect();
  await tick();
  ws().open(); // the handshake went through: WebSockets work here
  ws().drop(4001, 'unauthorized');
  assert.deepEqual(fallbacks, []);
  assert.deepEqual(disc, [[4001, false]]);
  assert.equal(FakeEventSource.all.length, 0);
  assert.equal(timers.pending.length, 0);
});

test('auto: a WebSocket handshake that hangs falls back after connectTimeout', async () => {
  const { c, ws, timers } = autoClient({ connectTimeout: 300 });
  const fallbacks = [];
  c.on('fallback', (f) => fallbacks.push(f.reason));
  c.connect();
  await tick();
  await timers.fire(300);
  assert.equal(ws().closedWith !== undefined, true, 'the hanging socket is closed');
  ws().drop(1006); // its late close event is ignored
  assert.deepEqual(fallbacks, ['the WebSocket could not be opened (1006 no WebSocket handshake within 300 ms)']);
  assert.equal(FakeEventSource.all.length, 1);
  assert.equal(FakeSocket.all.length, 1);
});

test('auto: once a WebSocket was opened, losing it does not switch to SSE', async () => {
  const { c, ws, timers } = autoClient();
  const fallbacks = [];
  c.on('fallback', (f) => fallbacks.push(f));
  c.connect();
  await tick();
  ws().open();
  ws().frame({ type: 'connected', user: 'u' });
  ws().drop(1006); // Caddy restarting
  await timers.fire();
  ws().drop(1006); // still down: not a blocked path
  await timers.fire();
  assert.deepEqual(fallbacks, []);
  assert.equal(FakeEventSource.all.length, 0);
  assert.equal(FakeSocket.all.length, 3);
});

test('auto: while neither transport opens, attempts alternate with back-off', async () => {
  const { c, ws, es, timers } = autoClient();
  c.connect();
  await tick();
  const order = [];
  for (let i = 0; i < 2; i++) {
    order.push('ws');
    ws().drop(1006);
    await tick();
    order.push('sse');
    es().fail({ code: 502 });
    assert.equal(timers.pending.length, 1, 'back-off after both failed');
    await timers.fire();
  }
  assert.equal(FakeSocket.all.length, 3, 'the third attempt tries a WebSocket again');
  assert.equal(FakeEventSource.all.length, 2);
  assert.deepEqual(order, ['ws', 'sse', 'ws', 'sse']);
});

test('auto without an EventSource is WebSocket only', async () => {
  const { c, ws, timers } = autoClient({ EventSource: null });
  const fallbacks = [];
  c.on('fallback', (f) => fallbacks.push(f));
  c.connect();
  await tick();
  ws().drop(1006);
  assert.deepEqual(fallbacks, []);
  assert.equal(timers.pending.length, 1);
});
