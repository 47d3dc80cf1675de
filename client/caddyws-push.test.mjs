// Unit tests of the client's logic: node --test client/
//
// A scripted WebSocket stands in for the network so that back-off, close-code
// policy, recovery positions and de-duplication can be checked step by step.
// The same module runs against a real Caddy in integration/e2e/ (Node and Chromium).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PushClient, backoffDelay, shouldReconnect, FATAL_CLOSE_CODES } from './caddyws-push.js';
import { FakeSocket, fakeTimers, msg, tick } from './fake-network.mjs';

function newClient(opts = {}) {
  FakeSocket.all = [];
  const timers = fakeTimers();
  // connectTimeout 0: these tests script the handshake; the timeout has its own
  // tests (caddyws-push-sse.test.mjs).
  const c = new PushClient('wss://x/ws', { WebSocket: FakeSocket, random: () => 0.5, connectTimeout: 0, ...timers, ...opts });
  return { c, timers, sock: () => FakeSocket.all[FakeSocket.all.length - 1] };
}

test('backoffDelay is full jitter under an exponential ceiling', () => {
  const b = { base: 100, max: 1000, factor: 2 };
  assert.equal(backoffDelay(0, b, () => 0.999999), 99);
  assert.equal(backoffDelay(3, b, () => 0.999999), 799);
  assert.equal(backoffDelay(10, b, () => 0.999999), 999, 'capped at max');
  assert.equal(backoffDelay(10, b, () => 0), 0, 'full jitter reaches zero');
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(4, b);
    assert.ok(d >= 0 && d < 1000);
  }
});

test('close-code policy follows the protocol table', () => {
  for (const code of [1003, 1008, 1009, 4000, 4001, 4003, 4031]) {
    assert.equal(shouldReconnect(code), false, `no reconnect on ${code}`);
    assert.ok(FATAL_CLOSE_CODES[code]);
  }
  for (const code of [1001, 1006, 1011, 1013, 4004, 4008, 4029, 4030]) {
    assert.equal(shouldReconnect(code), true, `reconnect on ${code}`);
  }
});

test('first frame carries token and events, never the URL', async () => {
  const { c, sock } = newClient({ token: 'T1', events: ['a', 'b'] });
  c.connect();
  await tick();
  assert.equal(sock().url, 'wss://x/ws');
  sock().open();
  assert.deepEqual(sock().sent[0], { type: 'connect', events: ['a', 'b'], token: 'T1' });
});

test('connected, subscribe and unsubscribe frames', async () => {
  const { c, sock } = newClient({ token: 'T1' });
  const seen = [];
  c.on('connected', (i) => seen.push(i));
  c.subscribe('early'); // before connecting: goes into the connect frame
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected', user: 'alice', events: ['early'] });
  assert.deepEqual(seen, [{ user: 'alice', events: ['early'] }]);
  assert.equal(c.user, 'alice');
  c.subscribe('x', 'early');
  c.unsubscribe('early');
  assert.deepEqual(sock().sent.slice(1), [
    { type: 'subscribe', events: ['x'] },
    { type: 'unsubscribe', events: ['early'] },
  ]);
  assert.deepEqual(c.events(), ['x']);
});

test('handlers: named event, catch-all, reserved names, off', async () => {
  const { c, sock } = newClient();
  const got = [];
  const off = c.on('news', (m, meta) => got.push(['news', m, meta.id]));
  c.on('*', (m, meta) => got.push(['*', m, meta.event]));
  c.on('connected', () => got.push(['lifecycle']));
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected', user: '' });
  sock().frame({ type: 'message', id: '1', event: 'news', message: { a: 1 } });
  sock().frame({ type: 'message', id: '2', event: 'connected', message: 'spoof' });
  sock().frame({ type: 'message', id: '3', message: 'no event' });
  off();
  sock().frame({ type: 'message', id: '4', event: 'news', message: 'after off' });
  assert.deepEqual(got, [
    ['lifecycle'],
    ['news', { a: 1 }, '1'], ['*', { a: 1 }, 'news'],
    ['*', 'spoof', 'connected'],
    ['*', 'no event', undefined],
    ['*', 'after off', 'news'],
  ]);
});

test('a throwing handler does not stop the others', async () => {
  const { c, sock } = newClient();
  const got = [];
  const errors = [];
  c.on('news', () => { throw new Error('boom'); });
  c.on('news', (m) => got.push(m));
  c.on('error', (e) => errors.push(e.code));
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected', user: '' });
  sock().frame({ type: 'message', id: '1', event: 'news', message: 'hi' });
  assert.deepEqual(got, ['hi']);
  assert.deepEqual(errors, ['handler']);
});

test('reconnect sends the last positions in recover and drops duplicates', async () => {
  const { c, timers, sock } = newClient({ token: 'T', events: ['news'] });
  const got = [];
  c.on('news', (m) => got.push(m));
  const recovered = [];
  c.on('recovered', (s, i) => recovered.push([s, i.offset]));
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected', user: 'u' });
  sock().frame(msg('event:news', 1, 'm1'));
  sock().frame(msg('event:news', 2, 'm2'));
  sock().frame(msg('user:u', 7, 'u7'));
  sock().drop(4004, 'dropped');
  assert.equal(timers.pending.length, 1);
  await timers.fire();
  sock().open();
  assert.deepEqual(sock().sent[0], {
    type: 'connect', token: 'T', events: ['news'],
    recover: { 'event:news': { offset: 2, epoch: 'e1' }, 'user:u': { offset: 7, epoch: 'e1' } },
  });
  sock().frame({ type: 'connected', user: 'u' });
  sock().frame({ type: 'recovered', stream: 'event:news', recovered: true, epoch: 'e1', offset: 4 });
  // A server that replays from an older position: 2 is a duplicate.
  sock().frame(msg('event:news', 2, 'm2'));
  sock().frame(msg('event:news', 3, 'm3'));
  sock().frame(msg('event:news', 4, 'm4'));
  sock().frame(msg('event:news', 4, 'm4'));
  assert.deepEqual(got, ['m1', 'm2', 'u7', 'm3', 'm4']);
  assert.deepEqual(recovered, [['event:news', 4]]);
  assert.deepEqual(c.positions()['event:news'], { offset: 4, epoch: 'e1' });
});

test('notRecovered is reported and the new epoch is adopted', async () => {
  const { c, timers, sock } = newClient({ positions: { 'event:news': { offset: 9, epoch: 'old' } }, events: ['news'] });
  const lost = [];
  const got = [];
  c.on('notRecovered', (s, i) => lost.push([s, i.epoch, i.offset]));
  c.on('news', (m) => got.push(m));
  c.connect();
  await tick();
  sock().open();
  assert.deepEqual(sock().sent[0].recover, { 'event:news': { offset: 9, epoch: 'old' } });
  sock().frame({ type: 'connected', user: '' });
  sock().frame({ type: 'recovered', stream: 'event:news', recovered: false, epoch: 'new', offset: 0 });
  // offset 1 of the new epoch is new even though 1 <= 9
  sock().frame(msg('event:news', 1, 'fresh', { epoch: 'new' }));
  assert.deepEqual(lost, [['event:news', 'new', 0]]);
  assert.deepEqual(got, ['fresh']);
  assert.equal(timers.pending.length, 0);
});

test('messages without a position are de-duplicated by id', async () => {
  const { c, sock } = newClient();
  const got = [];
  c.on('*', (m) => got.push(m));
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected' });
  sock().frame({ type: 'message', id: 'a', message: 1 });
  sock().frame({ type: 'message', id: 'a', message: 1 });
  sock().frame({ type: 'message', id: 'b', message: 2 });
  assert.deepEqual(got, [1, 2]);
});

for (const code of [4001, 4003, 4000, 4031, 1008, 1003, 1009]) {
  test(`no reconnect after close ${code} with a static token`, async () => {
    const { c, timers, sock } = newClient({ token: 'T' });
    const disc = [];
    c.on('disconnected', (code, reason, info) => disc.push([code, reason, info.willReconnect]));
    c.connect();
    await tick();
    sock().open();
    sock().drop(code, 'why');
    assert.deepEqual(disc, [[code, 'why', false]]);
    assert.equal(timers.pending.length, 0);
    assert.equal(c.state, 'closed');
  });
}

for (const code of [1001, 1006, 1011, 1013, 4004, 4008, 4029, 4030]) {
  test(`reconnect after close ${code}`, async () => {
    const { c, timers, sock } = newClient({ token: 'T' });
    const disc = [];
    c.on('disconnected', (code, reason, info) => disc.push([code, info.willReconnect]));
    c.connect();
    await tick();
    sock().open();
    sock().drop(code);
    assert.deepEqual(disc, [[code, true]]);
    assert.equal(c.state, 'waiting');
    await timers.fire();
    assert.equal(FakeSocket.all.length, 2, 'a second socket was opened');
  });
}

test('back-off grows while failing and resets once connected', async () => {
  const { c, timers, sock } = newClient({ random: () => 0.999999, backoff: { base: 100, max: 10000 } });
  c.connect();
  await tick();
  const delays = [];
  for (let i = 0; i < 5; i++) {
    sock().drop(1006); // handshake failed
    delays.push(await timers.fire());
  }
  assert.deepEqual(delays, [99, 199, 399, 799, 1599]);
  sock().open();
  sock().frame({ type: 'connected' });
  sock().drop(1001);
  assert.equal(await timers.fire(), 99, 'attempts reset after a successful connect');
});

test('maxRetries gives up', async () => {
  const { c, timers, sock } = newClient({ maxRetries: 2 });
  const disc = [];
  c.on('disconnected', (code, r, info) => disc.push(info.willReconnect));
  c.connect();
  await tick();
  sock().drop(1006);
  await timers.fire();
  sock().drop(1006);
  await timers.fire();
  sock().drop(1006);
  assert.deepEqual(disc, [true, true, false]);
  assert.equal(timers.pending.length, 0);
});

test('a token function is called on every connect; one 4001 retries at once, two in a row stop', async () => {
  let n = 0;
  const { c, timers, sock } = newClient({ token: async () => `tok${++n}` });
  c.connect();
  await tick();
  sock().open();
  assert.equal(sock().sent[0].token, 'tok1');
  sock().frame({ type: 'connected' });
  sock().drop(4001, 'expired');
  assert.equal(await timers.fire(), 0, 'immediate retry with a fresh token');
  sock().open();
  assert.equal(sock().sent[0].token, 'tok2');
  sock().drop(4001, 'still bad');
  assert.equal(timers.pending.length, 0, 'gave up after two 4001 in a row');
  assert.equal(c.state, 'closed');
});

test('a failing token function is retried with back-off', async () => {
  let fail = true;
  const { c, timers, sock } = newClient({ token: async () => { if (fail) throw new Error('offline'); return 'ok'; } });
  const errors = [];
  c.on('error', (e) => errors.push(e.code));
  c.connect();
  await tick();
  assert.equal(FakeSocket.all.length, 0);
  assert.deepEqual(errors, ['token']);
  fail = false;
  await timers.fire();
  sock().open();
  assert.equal(sock().sent[0].token, 'ok');
});

test('close() stops reconnecting and closes normally', async () => {
  const { c, timers, sock } = newClient();
  c.connect();
  await tick();
  sock().open();
  const s = sock();
  c.close();
  assert.deepEqual(s.closedWith, { code: 1000, reason: 'client closed' });
  s.drop(1000);
  assert.equal(timers.pending.length, 0);
  // and a pending reconnect is cancelled
  c.connect();
  await tick();
  sock().drop(1006);
  assert.equal(timers.pending.length, 1);
  c.close();
  assert.equal(timers.pending.length, 0);
});

test('unsubscribe forgets the event stream position', async () => {
  const { c, timers, sock } = newClient({ events: ['news'] });
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected' });
  sock().frame(msg('event:news', 1, 'x'));
  sock().frame(msg('all', 3, 'b'));
  c.unsubscribe('news');
  sock().drop(1011);
  await timers.fire();
  sock().open();
  assert.deepEqual(sock().sent[0].recover, { all: { offset: 3, epoch: 'e1' } });
  assert.deepEqual(sock().sent[0].events, []);
});

test('reconnect() replaces the socket at once and keeps positions', async () => {
  const { c, timers, sock } = newClient({ events: ['news'] });
  const disc = [];
  c.on('disconnected', (code, reason, info) => disc.push([code, info.willReconnect]));
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected' });
  sock().frame(msg('event:news', 5, 'x'));
  const first = sock();
  c.reconnect();
  await tick();
  assert.deepEqual(first.closedWith, { code: 1000, reason: 'reconnecting' });
  first.drop(1000); // the old socket's close event must not schedule anything
  assert.equal(timers.pending.length, 0);
  assert.notEqual(sock(), first);
  sock().open();
  assert.deepEqual(sock().sent[0].recover, { 'event:news': { offset: 5, epoch: 'e1' } });
  assert.deepEqual(disc, [[1000, true]]);
});

test("the network's 'online' event skips the rest of the back-off", async () => {
  const network = new EventTarget();
  const { c, timers, sock } = newClient({ network, backoff: { base: 60000, max: 60000 } });
  c.connect();
  await tick();
  sock().open();
  sock().frame({ type: 'connected' });
  sock().drop(1006);
  assert.equal(timers.pending.length, 1);
  network.dispatchEvent(new Event('online'));
  await tick();
  assert.equal(timers.pending.length, 0, 'the back-off timer was cancelled');
  assert.equal(FakeSocket.all.length, 2, 'reconnected at once');
  // Connected clients ignore it, and a closed client no longer listens.
  network.dispatchEvent(new Event('online'));
  await tick();
  assert.equal(FakeSocket.all.length, 2);
  c.close();
  sock().drop(1006);
  network.dispatchEvent(new Event('online'));
  await tick();
  assert.equal(FakeSocket.all.length, 2);
});

test('subscription changes made while the connect frame is in flight are sent once connected', async () => {
  const { c, sock } = newClient({ events: ['a', 'b'] });
  c.connect();
  await tick();
  sock().open(); // connect frame with [a, b] sent
  c.subscribe('c');
  c.unsubscribe('a');
  assert.equal(sock().sent.length, 1, 'nothing sent before the server accepted the connection');
  sock().frame({ type: 'connected', events: ['a', 'b'] });
  assert.deepEqual(sock().sent.slice(1), [
    { type: 'subscribe', events: ['c'] },
    { type: 'unsubscribe', events: ['a'] },
  ]);
});
