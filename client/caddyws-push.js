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
//     ('notRecovered'), instead of leaving a silent hole;
//   - speaks Server-Sent Events (EventSource) where a WebSocket cannot be opened
//     (transport 'auto', the default, says so with a 'fallback' event), with the same
//     handlers, de-duplication and recovery (from the last event id).

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
  'connected', 'disconnected', 'reconnecting', 'recovered', 'notRecovered', 'error', 'message', 'fallback',
]);

/** The transports a client can use; 'auto' is a WebSocket, or SSE where none can be opened. */
export const TRANSPORTS = Object.freeze(['auto', 'websocket', 'sse']);

// The HTTP status of a refused SSE request (when the EventSource implementation
// reports it, as Node's eventsource package does; browsers do not) as the close
// code the WebSocket transport would have seen.
const SSE_STATUS_CODES = Object.freeze({ 401: 4001, 403: 4003, 503: 1013 });

/**
 * sseURL turns the subscribe URL (ws:, wss:, http: or https:) into the URL of an
 * SSE stream: events in `event` parameters, the token (if any) in `token`, the
 * last event id seen in `last_event_id`.
 */
export function sseURL(url, { events = [], token, lastEventId } = {}) {
  const base = globalThis.location && globalThis.location.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  for (const e of events) u.searchParams.append('event', e);
  if (token) u.searchParams.set('token', token);
  if (lastEventId) u.searchParams.set('last_event_id', lastEventId);
  return u.href;
}

/** wsURL turns the subscribe URL into a ws: or wss: URL (http: and https: are mapped). */
export function wsURL(url) {
  if (/^https:/i.test(url)) return 'wss:' + url.slice(6);
  if (/^http:/i.test(url)) return 'ws:' + url.slice(5);
  return url;
}

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
 *              the user otherwise (cookie + Caddy auth, the token cookie, anonymous).
 *   events     initial events to subscribe to.
 *   positions  initial positions {stream: {offset, epoch}}, e.g. saved by a previous page
 *              (see positions()), so even a page reload misses nothing (WebSocket).
 *   lastEventId  the SSE position to resume from, e.g. saved by a previous page (see
 *              lastEventId()).
 *   transport  'auto' (a WebSocket; SSE when a WebSocket cannot be opened), 'websocket'
 *              or 'sse'. Default: 'auto'.
 *   connectTimeout  milliseconds a WebSocket handshake or an SSE response may take
 *              before the attempt counts as failed. Default: 5000.
 *   backoff    {base: 500, max: 30000, factor: 2} in milliseconds.
 *   maxRetries reconnect attempts in a row before giving up. Default: Infinity.
 *   WebSocket  the constructor to use. Default: globalThis.WebSocket.
 *   EventSource  the constructor to use. Default: globalThis.EventSource.
 *   eventSourceInit  the second argument of new EventSource(url, init), or a function
 *              (token) => init, e.g. {withCredentials: true} for a cross-origin cookie.
 *   tokenInQuery  SSE only: put the token in the `token` query parameter (EventSource
 *              cannot set headers). Default: true.
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
    this._mode = options.transport || 'auto';
    if (!TRANSPORTS.includes(this._mode)) {
      throw new TypeError(`caddyws-push: transport must be one of ${TRANSPORTS.join(', ')}, not ${this._mode}`);
    }
    this._WS = options.WebSocket || globalThis.WebSocket;
    this._ES = options.EventSource || globalThis.EventSource;
    if (typeof this._WS !== 'function') this._WS = null;
    if (typeof this._ES !== 'function') this._ES = null;
    if (this._mode === 'auto' && !this._WS) this._mode = this._ES ? 'sse' : 'auto';
    if (this._mode !== 'sse' && !this._WS) {
      throw new TypeError('caddyws-push: no WebSocket implementation (pass options.WebSocket)');
    }
    if (this._mode === 'sse' && !this._ES) {
      throw new TypeError('caddyws-push: no EventSource implementation (pass options.EventSource)');
    }
    this._connectTimeout = options.connectTimeout ?? 5000;
    this._tokenInQuery = options.tokenInQuery !== false;
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
    this._lastEventId = typeof options.lastEventId === 'string' ? options.lastEventId : '';
    this._seenIds = new Set(); // ids of messages without a position, bounded (see _remember)
    this._handlers = new Map(); // name -> Set<fn>

    this._conn = null; // the current attempt: {kind, ws|es, close(code, reason), listen(name)}
    this._timer = null;
    this._attempt = 0;
    this._unauthorizedInARow = 0;
    this._stopped = true;
    this._opened = false; // a connection was accepted since connect(): 'auto' stays on its transport
    this.transport = this._mode === 'sse' ? 'sse' : 'websocket';
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
    this._conn?.listen(name);
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
    this._opened = false;
    this.transport = this._mode === 'sse' ? 'sse' : 'websocket';
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
    const conn = this._conn;
    this._conn = null;
    this.state = 'closed';
    conn?.close(code, reason);
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
    const conn = this._conn;
    this._conn = null;
    conn?.close(1000, 'reconnecting');
    this._emit('disconnected', 1000, 'reconnect requested', { willReconnect: true, delay: 0 });
    this._attempt = 0;
    this._open();
    return this;
  }

  /**
   * subscribe adds events; sent now when connected, and on every reconnect. An SSE
   * stream cannot be told: it is reopened with the new events, from the last event id.
   */
  subscribe(...events) {
    const added = events.flat().filter((e) => typeof e === 'string' && e !== '' && !this._events.has(e));
    added.forEach((e) => this._events.add(e));
    if (added.length && this.state === 'open') this._change({ type: 'subscribe', events: added });
    return this;
  }

  /** unsubscribe removes events and forgets their stream positions. */
  unsubscribe(...events) {
    const removed = events.flat().filter((e) => this._events.delete(e));
    removed.forEach((e) => this._positions.delete('event:' + e));
    if (removed.length && this.state === 'open') this._change({ type: 'unsubscribe', events: removed });
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

  /** lastEventId returns the id of the last SSE event seen ('' if none): the SSE transport's position. */
  lastEventId() {
    return this._lastEventId;
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
    const ws = this._conn && this._conn.ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
  }

  // _change passes a subscription change to the open connection.
  _change(frame) {
    if (this._conn?.kind !== 'sse') {
      this._send(frame);
      return;
    }
    if (this._resubscribing) return;
    // Several calls in a row reopen the stream once.
    this._resubscribing = true;
    queueMicrotask(() => {
      this._resubscribing = false;
      if (this.state !== 'open' || this._conn?.kind !== 'sse') return;
      this._generation++;
      const conn = this._conn;
      this._conn = null;
      conn.close(1000, 'resubscribing');
      this._open();
    });
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
    try {
      this._conn = this.transport === 'sse' ? this._openSSE(gen, token) : this._openWebSocket(gen, token);
    } catch (err) {
      // A malformed URL will not get better by retrying.
      this._stopped = true;
      this.state = 'closed';
      this._emit('error', { code: 'url', reason: String(err && err.message || err), error: err });
      this._emit('disconnected', 1006, 'invalid url', { willReconnect: false });
    }
  }

  // _attemptOf returns the bookkeeping both transports share for one connection attempt:
  // the connect timeout, the 'connected' handling and the single end of the attempt.
  _attemptOf(gen, kind, abort) {
    const a = { kind, connected: false, wasOpen: false, asked: [], ended: false };
    a.live = () => gen === this._generation && !a.ended;
    // opened: the handshake (WebSocket) or the response (SSE) went through,
    // so this transport works on this network whatever the server says next.
    a.opened = () => {
      if (a.timer !== null) this._clearTimeout(a.timer);
      a.timer = null;
      a.wasOpen = true;
      this._opened = true;
    };
    a.end = (code, reason) => {
      if (!a.live()) return;
      a.ended = true;
      if (a.timer !== null) this._clearTimeout(a.timer);
      a.timer = null;
      this._conn = null;
      if (this._stopped) return;
      this._ended(a, code, reason);
    };
    a.timer = this._connectTimeout > 0 && Number.isFinite(this._connectTimeout)
      ? this._setTimeout(() => {
        a.timer = null;
        if (!a.live()) return;
        abort();
        a.end(1006, `no ${kind === 'sse' ? 'SSE response' : 'WebSocket handshake'} within ${this._connectTimeout} ms`);
      }, this._connectTimeout)
      : null;
    a.connectedFrame = (f) => {
      a.connected = true;
      this.state = 'open';
      this._attempt = 0;
      this._unauthorizedInARow = 0;
      this.user = f.user;
      this._emit('connected', { user: f.user, events: f.events || [] });
      // subscribe()/unsubscribe() calls made while connecting were not sent:
      // send the difference now.
      const added = [...this._events].filter((e) => !a.asked.includes(e));
      const removed = a.asked.filter((e) => !this._events.has(e));
      if (added.length) this._change({ type: 'subscribe', events: added });
      if (removed.length) this._change({ type: 'unsubscribe', events: removed });
    };
    return a;
  }

  _openWebSocket(gen, token) {
    const ws = new this._WS(wsURL(this.url));
    const a = this._attemptOf(gen, 'websocket', () => {
      try { ws.close(); } catch { /* not open yet */ }
    });
    ws.onopen = () => {
      if (!a.live()) return;
      a.opened();
      a.asked = [...this._events];
      const frame = { type: 'connect', events: a.asked };
      if (token) frame.token = token;
      if (this._positions.size) frame.recover = this.positions();
      ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (ev) => {
      if (!a.live()) return;
      let f;
      try {
        f = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        this._emit('error', { code: 'protocol', reason: 'a frame that is not JSON' });
        return;
      }
      if (f && f.type === 'connected' && !a.connected) {
        a.connectedFrame(f);
        return;
      }
      this._frame(f);
    };
    ws.onclose = (ev) => a.end(ev && ev.code ? ev.code : 1006, (ev && ev.reason) || '');
    // Browsers report the details of a failed handshake only through the close event.
    ws.onerror = () => {};
    return {
      kind: 'websocket', ws, attempt: a,
      close: (code, reason) => {
        if (ws.readyState <= 1) {
          try { ws.close(code, reason); } catch { /* already closing */ }
        }
      },
      listen: () => {},
    };
  }

  _openSSE(gen, token) {
    const events = [...this._events];
    const url = sseURL(this.url, { events, token: this._tokenInQuery ? token : undefined, lastEventId: this._lastEventId });
    const init = typeof this._opts.eventSourceInit === 'function'
      ? this._opts.eventSourceInit(token) : this._opts.eventSourceInit;
    const es = init === undefined ? new this._ES(url) : new this._ES(url, init);
    const a = this._attemptOf(gen, 'sse', () => es.close());
    a.asked = events;
    es.onopen = () => {
      if (a.live()) a.opened();
    };
    // EventSource dispatches by the `event:` name: listen to every name a frame
    // can come under. The frame's own type (in data) decides what it is.
    const listened = new Set();
    const onEvent = (ev) => {
      if (!a.live()) return;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        this._emit('error', { code: 'protocol', reason: 'an SSE event whose data is not JSON' });
        return;
      }
      if (f && f.type === 'message') {
        if (ev.lastEventId) this._lastEventId = ev.lastEventId;
        this._frame(f);
        return;
      }
      if (ev.type === 'close' || (f && f.type === 'close')) {
        // The server ends the stream after this event: do not let the
        // EventSource reconnect by itself, the close code decides.
        es.close();
        a.end(Number(f && f.code) || 1006, String((f && f.reason) || ''));
        return;
      }
      if (f && f.type === 'connected') {
        if (!a.connected) {
          for (const e of f.events || []) listen(e);
          a.connectedFrame(f);
        }
        return;
      }
      this._frame(f);
    };
    const listen = (name) => {
      if (listened.has(name) || name === 'error' || name === '*') return;
      listened.add(name);
      es.addEventListener(name, onEvent);
    };
    for (const name of ['message', 'connected', 'recovered', 'close', ...events, ...this._handlers.keys()]) {
      if (!RESERVED.has(name) || name === 'message' || name === 'connected' || name === 'recovered') listen(name);
    }
    es.addEventListener('error', (ev) => {
      if (!a.live()) return;
      if (ev && typeof ev.data === 'string') {
        onEvent(ev); // an event the server named 'error'
        return;
      }
      // The stream failed or was refused. An EventSource would reconnect by
      // itself, without jitter and without the close-code policy: we do it.
      es.close();
      const status = ev && Number(ev.code ?? ev.status);
      const code = SSE_STATUS_CODES[status] || 1006;
      const why = status ? `HTTP ${status}` : (a.connected ? 'stream ended' : 'SSE stream could not be opened');
      a.end(code, (ev && ev.message) ? `${why}: ${ev.message}` : why);
    });
    return {
      kind: 'sse', es, attempt: a,
      close: () => es.close(),
      listen: (name) => { if (!RESERVED.has(name)) listen(name); },
    };
  }

  // _ended is where every attempt ends: a fallback to SSE, or the reconnect policy.
  _ended(a, code, reason) {
    if (code === 4001) {
      this._unauthorizedInARow++;
    } else if (a.connected) {
      this._unauthorizedInARow = 0;
    }
    if (this._mode === 'auto' && !this._opened && !a.wasOpen && this._ES) {
      if (a.kind === 'websocket') {
        // No WebSocket yet through this network: try SSE at once.
        this.transport = 'sse';
        const why = reason ? `${code} ${reason}` : String(code);
        this._emit('fallback', { from: 'websocket', to: 'sse', code, reason: `the WebSocket could not be opened (${why})` });
        this._open();
        return;
      }
      // Neither opened: the server may be down rather than the path blocking
      // WebSockets, so the next attempt tries a WebSocket again.
      this.transport = 'websocket';
    }
    this._scheduleReconnect(code, reason);
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
