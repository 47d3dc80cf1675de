// caddyws-push.js: the browser (and Node) client for Caddy's websocket_push.
//
// No dependencies; an ES module. It speaks the protocol in docs/push-protocol.md:
//
//   import { PushClient } from '/caddyws-push.js';
//   const push = new PushClient('wss://example.com/ws', {
//     token: async () => (await fetch('/push-token')).text(), // fetched on every (re)connect
//     events: ['news'],
//   });
//   push.on('news', (message, meta) => render(message));
//   push.on('notRecovered', (stream) => reloadFromServer(stream));
//   push.connect();
//
// What it does for you:
//   - sends the token in the first frame (never in the URL, so never in access logs);
//   - keeps the wanted events and re-subscribes on every reconnect;
//   - reconnects with exponential back-off and full jitter, except after the close
//     codes that mean "this will fail again" (unauthorised, forbidden, bad frame...);
//   - remembers the last position (stream, offset, epoch) it saw and asks the server
//     to replay what was missed after a reconnect (when the server keeps history);
//   - drops duplicates by (stream, offset), so no message is shown twice;
//   - tells you, per stream, whether the gap was filled ('recovered') or could not be
//     ('notRecovered'), instead of leaving a silent hole.

/** Close codes after which reconnecting would only fail the same way. */
export const FATAL_CLOSE_CODES = Object.freeze({
  1003: 'unsupported data',
  1008: 'policy violation',
  1009: 'frame too big',
  4000: 'bad frame',
  4001: 'unauthorized',
  4003: 'forbidden',
  4031: 'too many events',
});

/** Lifecycle event names; a published event with one of these names reaches only 'message'. */
export const LIFECYCLE_EVENTS = Object.freeze([
  'connected', 'disconnected', 'reconnecting', 'recovered', 'notRecovered', 'error', 'message',
]);

const RESERVED = new Set(LIFECYCLE_EVENTS);

/**
 * shouldReconnect tells whether a close with this code is worth a reconnect.
 * Everything not known to be fatal (1001 going away, 1006 network loss, 1011, 1013,
 * 4004 dropped, 4008 auth timeout, 4029 slow, 4030 too many connections...) is retried.
 */
export function shouldReconnect(code) {
  return !(code in FATAL_CLOSE_CODES);
}

/**
 * backoffDelay is exponential back-off with full jitter: a uniform random delay in
 * [0, min(max, base * factor^attempt)], so that thousands of clients cut off at the
 * same moment (a Caddy restart) do not come back at the same moment.
 */
export function backoffDelay(attempt, { base = 500, max = 30000, factor = 2 } = {}, random = Math.random) {
  const ceiling = Math.min(max, base * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}

/**
 * PushClient is one logical subscription that survives reconnects.
 *
 * Options:
 *   token      string, or a (possibly async) function returning one, called before every
 *              connect so an expiring token can be refreshed. Omit it when the server knows
 *              the user otherwise (cookie + Caddy auth, anonymous).
 *   events     initial events to subscribe to.
 *   positions  initial positions {stream: {offset, epoch}}, e.g. saved by a previous page
 *              (see positions()), so even a page reload misses nothing.
 *   backoff    {base: 500, max: 30000, factor: 2} in milliseconds.
 *   maxRetries reconnect attempts in a row before giving up. Default: Infinity.
 *   WebSocket  the constructor to use. Default: globalThis.WebSocket.
 *   random     a () => [0,1) source for the jitter. Default: Math.random.
 *   setTimeout/clearTimeout  timer functions (tests). Default: the global ones.
 *   network    an EventTarget firing 'online' (the browser's window): a client waiting
 *              to reconnect tries at once when the network comes back. Default:
 *              globalThis when it is an EventTarget (browsers), else none.
 */
export class PushClient {
  constructor(url, options = {}) {
    if (!url) throw new TypeError('caddyws-push: a WebSocket URL is required');
    this.url = url;
    this._opts = options;
    this._token = options.token;
    this._WS = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== 'function') {
      throw new TypeError('caddyws-push: no WebSocket implementation (pass options.WebSocket)');
    }
    this._backoff = options.backoff || {};
    this._maxRetries = options.maxRetries ?? Infinity;
    this._random = options.random || Math.random;
    this._setTimeout = options.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((t) => clearTimeout(t));

    this._events = new Set(options.events || []);
    this._positions = new Map(); // stream -> {offset, epoch}
    for (const [stream, p] of Object.entries(options.positions || {})) {
      if (p && Number.isFinite(p.offset)) this._positions.set(stream, { offset: p.offset, epoch: String(p.epoch ?? '') });
    }
    this._seenIds = new Set(); // ids of messages without a position, bounded (see _remember)
    this._handlers = new Map(); // name -> Set<fn>

    this._ws = null;
    this._timer = null;
    this._attempt = 0;
    this._unauthorizedInARow = 0;
    this._stopped = true;
    this._generation = 0; // invalidates callbacks of sockets we gave up on
    this._network = options.network !== undefined ? options.network
      : (typeof globalThis.addEventListener === 'function' ? globalThis : null);
    this._onOnline = () => {
      // Back online: skip the rest of the back-off.
      if (this.state === 'waiting' && this._timer !== null) {
        this._clearTimeout(this._timer);
        this._timer = null;
        this._open();
      }
    };
    this.state = 'idle'; // idle | connecting | open | waiting | closed
    this.user = undefined;
  }

  /** on registers fn for a published event, '*'/'message' for every message, or a lifecycle event. Returns an "off" function. */
  on(name, fn) {
    if (name === '*') name = 'message';
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    if (name === '*') name = 'message';
    this._handlers.get(name)?.delete(fn);
  }

  /** connect starts (or restarts after close()) the connection loop. */
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._attempt = 0;
    this._unauthorizedInARow = 0;
    this._network?.addEventListener('online', this._onOnline);
    this._open();
    return this;
  }

  /** close stops for good (no reconnect) with a normal closure. */
  close(code = 1000, reason = 'client closed') {
    this._stopped = true;
    this._network?.removeEventListener('online', this._onOnline);
    this._generation++;
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
    const ws = this._ws;
    this._ws = null;
    this.state = 'closed';
    if (ws && ws.readyState <= 1) {
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
  }

  /**
   * reconnect drops the current connection and connects again at once, keeping
   * positions (so what was published meanwhile is recovered). Use it when the app
   * knows the network changed, or to try recovery out.
   */
  reconnect() {
    if (this._stopped) return this.connect();
    this._generation++;
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) {
      try { ws.close(1000, 'reconnecting'); } catch { /* already closing */ }
    }
    this._emit('disconnected', 1000, 'reconnect requested', { willReconnect: true, delay: 0 });
    this._attempt = 0;
    this._open();
    return this;
  }

  /** subscribe adds events; sent now when connected, and on every reconnect. */
  subscribe(...events) {
    const added = events.flat().filter((e) => typeof e === 'string' && e !== '' && !this._events.has(e));
    added.forEach((e) => this._events.add(e));
    if (added.length && this.state === 'open') this._send({ type: 'subscribe', events: added });
    return this;
  }

  /** unsubscribe removes events and forgets their stream positions. */
  unsubscribe(...events) {
    const removed = events.flat().filter((e) => this._events.delete(e));
    removed.forEach((e) => this._positions.delete('event:' + e));
    if (removed.length && this.state === 'open') this._send({ type: 'unsubscribe', events: removed });
    return this;
  }

  /** events returns the events this client wants. */
  events() {
    return [...this._events];
  }

  /** positions returns the last position per stream, JSON-ready (save it to resume after a page reload). */
  positions() {
    return Object.fromEntries([...this._positions].map(([s, p]) => [s, { ...p }]));
  }

  // --- internals -----------------------------------------------------------

  _emit(name, ...args) {
    const hs = this._handlers.get(name);
    if (!hs) return;
    for (const fn of [...hs]) {
      try {
        fn(...args);
      } catch (err) {
        // A throwing handler must not break the connection or the other handlers.
        if (name !== 'error') this._emit('error', { code: 'handler', reason: String(err && err.message || err), error: err });
      }
    }
  }

  _send(frame) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify(frame));
  }

  async _open() {
    const gen = ++this._generation;
    this.state = 'connecting';
    let token;
    try {
      token = typeof this._token === 'function' ? await this._token() : this._token;
    } catch (err) {
      if (gen !== this._generation || this._stopped) return;
      this._emit('error', { code: 'token', reason: 'fetching a token failed: ' + (err && err.message || err), error: err });
      this._scheduleReconnect(1006, 'token fetch failed');
      return;
    }
    if (gen !== this._generation || this._stopped) return;

    let ws;
    try {
      ws = new this._WS(this.url);
    } catch (err) {
      // A malformed URL will not get better by retrying.
      this._stopped = true;
      this.state = 'closed';
      this._emit('error', { code: 'url', reason: String(err && err.message || err), error: err });
      this._emit('disconnected', 1006, 'invalid url', { willReconnect: false });
      return;
    }
    this._ws = ws;
    let connected = false;
    let asked = []; // the events of the connect frame

    ws.onopen = () => {
      if (gen !== this._generation) return;
      asked = [...this._events];
      const frame = { type: 'connect', events: asked };
      if (token) frame.token = token;
      if (this._positions.size) frame.recover = this.positions();
      ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (ev) => {
      if (gen !== this._generation) return;
      let f;
      try {
        f = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        this._emit('error', { code: 'protocol', reason: 'a frame that is not JSON' });
        return;
      }
      if (f && f.type === 'connected' && !connected) {
        connected = true;
        this.state = 'open';
        this._attempt = 0;
        this._unauthorizedInARow = 0;
        this.user = f.user;
        // subscribe()/unsubscribe() calls made while the connect frame was in
        // flight were not sent: send the difference now.
        const added = [...this._events].filter((e) => !asked.includes(e));
        const removed = asked.filter((e) => !this._events.has(e));
        if (added.length) this._send({ type: 'subscribe', events: added });
        if (removed.length) this._send({ type: 'unsubscribe', events: removed });
        this._emit('connected', { user: f.user, events: f.events || [] });
        return;
      }
      this._frame(f);
    };
    ws.onclose = (ev) => {
      if (gen !== this._generation) return;
      this._ws = null;
      const code = ev && ev.code ? ev.code : 1006;
      const reason = (ev && ev.reason) || '';
      if (this._stopped) return;
      if (code === 4001) {
        this._unauthorizedInARow++;
      } else if (connected) {
        this._unauthorizedInARow = 0;
      }
      this._scheduleReconnect(code, reason);
    };
    // Browsers report the details of a failed handshake only through the close event.
    ws.onerror = () => {};
  }

  _frame(f) {
    switch (f && f.type) {
      case 'message':
        this._message(f);
        break;
      case 'recovered': {
        const info = { epoch: f.epoch, offset: f.offset };
        if (f.recovered) {
          this._emit('recovered', f.stream, info);
        } else {
          // The gap is lost: adopt the server's position so later messages are not
          // mistaken for duplicates, and tell the app so it can reload its state.
          if (f.stream && f.epoch !== undefined && Number.isFinite(f.offset)) {
            this._positions.set(f.stream, { offset: f.offset, epoch: String(f.epoch) });
          }
          this._emit('notRecovered', f.stream, info);
        }
        break;
      }
      case 'error':
        this._emit('error', { code: f.code, reason: f.reason });
        break;
      case 'connected':
      case 'subscribed':
      case 'unsubscribed':
        break; // acknowledgements
      default:
        this._emit('error', { code: 'protocol', reason: 'unknown frame type: ' + (f && f.type) });
    }
  }

  _message(f) {
    const meta = { id: f.id, event: f.event, stream: f.stream, offset: f.offset, epoch: f.epoch };
    if (f.stream !== undefined && Number.isFinite(f.offset)) {
      const epoch = String(f.epoch ?? '');
      const last = this._positions.get(f.stream);
      if (last && last.epoch === epoch && f.offset <= last.offset) return; // seen already
      this._positions.set(f.stream, { offset: f.offset, epoch });
    } else if (f.id !== undefined) {
      if (this._seenIds.has(f.id)) return;
      this._remember(f.id);
    }
    if (f.event !== undefined && !RESERVED.has(f.event)) this._emit(f.event, f.message, meta);
    this._emit('message', f.message, meta);
  }

  _remember(id) {
    this._seenIds.add(id);
    if (this._seenIds.size > 1024) {
      // Sets iterate in insertion order: drop the oldest.
      this._seenIds.delete(this._seenIds.values().next().value);
    }
  }

  _scheduleReconnect(code, reason) {
    const unauthorized = code === 4001;
    // A fresh token may cure 4001 once; a second 4001 in a row means it will not.
    const retryable = unauthorized
      ? typeof this._token === 'function' && this._unauthorizedInARow < 2
      : shouldReconnect(code);
    const willReconnect = retryable && this._attempt < this._maxRetries;
    const delay = willReconnect
      ? (unauthorized && this._unauthorizedInARow === 1 ? 0 : backoffDelay(this._attempt, this._backoff, this._random))
      : undefined;
    this.state = willReconnect ? 'waiting' : 'closed';
    if (!willReconnect) {
      this._stopped = true;
      this._network?.removeEventListener('online', this._onOnline);
    }
    this._emit('disconnected', code, reason, { willReconnect, delay, fatal: FATAL_CLOSE_CODES[code] });
    if (!willReconnect || this._stopped) return;
    this._attempt++;
    this._emit('reconnecting', this._attempt, delay);
    const gen = this._generation;
    this._timer = this._setTimeout(() => {
      this._timer = null;
      if (gen === this._generation && !this._stopped) this._open();
    }, delay);
  }
}

/** connect is a shorthand for new PushClient(url, options).connect(). */
export function connect(url, options) {
  return new PushClient(url, options).connect();
}
