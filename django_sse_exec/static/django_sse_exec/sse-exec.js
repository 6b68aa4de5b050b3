/*
 * sse-exec.js: a small browser client for django_sse_exec streams.
 *
 * No build step and no dependencies: include it with a <script> tag and call
 * SSEExec.connect(url, options). It wraps EventSource and
 *   - dispatches named events to handlers as (data, meta): data is the parsed
 *     JSON (the raw text if it is not JSON), meta is {id, event, raw};
 *   - exposes lastEventId and state: "connecting" | "live" | "reconnecting" | "closed";
 *   - closes itself on "stream-closed" (and, if that was missed, the server's
 *     204 on the next reconnect makes EventSource stop: state becomes "closed");
 *   - passes "stream-reset" (the history the client asked for was trimmed; what
 *     is still retained follows) to the "stream-reset" handler or onReset;
 *   - keeps the stream's token fresh: the server sends "stream-token-renewed"
 *     before the token expires, and the next reconnect uses the new URL, from
 *     lastEventId (nothing lost, nothing twice); "stream-token-expired" (the
 *     grant was not renewed) closes the stream and calls onExpired(data), where
 *     a page may fetch a new stream URL and connect again;
 *   - never throws: an event with no handler is ignored, an exception in a
 *     handler is reported to onError/console and the stream carries on.
 *
 *   const stream = SSEExec.connect(url, {
 *     handlers: {"task-complete": (data, meta) => render(data)},
 *     onStateChange: (state) => badge.textContent = state,
 *   });
 *   stream.on("execution-complete", showSummary);   // add handlers any time
 *   stream.lastEventId; stream.state; stream.close();
 *
 * Progress people can plan by: stream.pace holds what the last events said --
 * {percent, rate, eta, message, step, taskId, stalled, cancelRequested} -- and
 * onPace(pace) is called when it changes; SSEExec.formatEta(seconds) and
 * SSEExec.formatRate(perSecond) turn the figures into words. Cancel from the
 * page: give cancelUrl (the server's cancel_url(...)) and call stream.cancel()
 * (a Promise of {status, ok, body}), or give cancelButton too, which is then
 * wired up: it posts once, is disabled while the cancel is under way, and is
 * hidden once the execution ended.
 *
 *   var stream = SSEExec.connect(url, {cancelUrl: cancelUrl, cancelButton: button,
 *     onPace: function (p) { label.textContent = SSEExec.formatEta(p.eta); }});
 *
 * SSEExec.connectMany(url, options) reads a stream of many executions (a
 * multi_stream_url or feed_stream_url): handlers get (data, meta) with
 * meta.executionId and meta.id (the event's id in its execution), data being
 * the event's own data; "execution-added" announces an execution of a feed,
 * "execution-removed" says the feed's stream stopped following one (it left the
 * window of the feed's latest entries; announced again, it is replayed from its
 * start), and a "stream-reset" whose data names the feed starts the feed over.
 * With {shareTabs: true} every tab of the browser showing the same stream
 * shares ONE connection (the first tab holds it, the others get its events
 * through a BroadcastChannel, and another tab takes over, from the exact
 * cursor, when that one closes), so a page open in many tabs stays within the
 * browser's six connections per host. Tabs that share register the same events.
 *
 *   var many = SSEExec.connectMany(feedUrl, {shareTabs: true, handlers: {
 *     "execution-added": (data, meta) => addRow(meta.executionId),
 *     "task-complete": (data, meta) => advance(meta.executionId, data),
 *   }});
 */
(function (root, factory) {
  "use strict";
  var api = factory(root);
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.SSEExec = api;
  }
})(typeof self !== "undefined" ? self : this, function (root) {
  "use strict";

  var STREAM_CLOSED = "stream-closed";
  var STREAM_RESET = "stream-reset";
  var TOKEN_RENEWED = "stream-token-renewed";
  var TOKEN_EXPIRED = "stream-token-expired";
  /** Milliseconds before reconnecting with a renewed token (as the server's retry:, jittered). */
  var RENEWED_RECONNECT_MS = 2000;
  /** Events that change stream.pace. */
  var PACE_EVENTS = ["progress", "execution-stalled", "execution-resumed",
                     "execution-cancel-requested", "execution-complete", "execution-cancelled"];
  var STATES = ["connecting", "live", "reconnecting", "closed"];

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return text;
    }
  }

  function report(stream, error, context) {
    try {
      if (typeof stream.options.onError === "function") {
        stream.options.onError(error, context);
        return;
      }
    } catch (ignored) { /* an onError that throws must not break the stream */ }
    if (root.console && root.console.error) {
      root.console.error("sse-exec:", context, error);
    }
  }

  /**
   * One stream. Use SSEExec.connect(url, options) rather than `new`.
   * options: handlers {event: fn(data, meta)}, onStateChange fn(state, previous),
   * onReset fn(data), onExpired fn(data), onError fn(error, context), withCredentials
   * bool, reconnectMs (the pause before reconnecting with a renewed token),
   * EventSource (a constructor, for tests).
   */
  /** What every stream object starts with (Stream and Many). */
  function init(stream, url, options) {
    stream.url = url;
    stream.options = options || {};
    stream.state = "connecting";
    stream.lastEventId = null;
    stream.handlers = {};
    stream.source = null;
    stream._listening = {};
  }

  /** When the connection dropped after the token was renewed: `reopen` after a
   *  jittered pause (the old EventSource would come back with the old token). */
  function reconnectRenewed(stream, reopen) {
    stream._renewed = false;
    stream.source.close();
    stream._setState("reconnecting");
    var wait = stream.options.reconnectMs != null ? stream.options.reconnectMs
      : RENEWED_RECONNECT_MS + Math.random() * 1000;
    root.setTimeout(function () {
      if (stream.state !== "closed") {
        reopen.call(stream);
      }
    }, wait);
  }

  /** The token events of either kind of stream: true when `event` was one of them. */
  function tokenEvent(stream, event, data, meta) {
    if (event === TOKEN_RENEWED && data && typeof data.url === "string") {
      stream.url = data.url;
      stream._renewed = true;
    } else if (event !== TOKEN_EXPIRED) {
      return false;
    }
    var list = (stream.handlers[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      stream._call(list[i], data, meta);
    }
    if (event === TOKEN_EXPIRED) {
      stream.close();
      if (typeof stream.options.onExpired === "function") {
        stream._call(stream.options.onExpired, data, meta);
      }
    }
    return true;
  }

  /** Open stream.source at stream.url, from its lastEventId; the source, or null. */
  function openAt(stream) {
    var url = stream.lastEventId ? withParam(stream.url, "last_event_id", stream.lastEventId)
      : stream.url;
    stream.source = openSource(stream, url);
    return stream.source;
  }

  /** A new EventSource for `stream`, or null (then the stream is closed and says why). */
  function openSource(stream, url) {
    var Source = stream.options.EventSource || root.EventSource;
    if (typeof Source !== "function") {
      stream._setState("closed");
      report(stream, new Error("EventSource is not available"), "connect");
      return null;
    }
    return new Source(url, {withCredentials: !!stream.options.withCredentials});
  }

  function Stream(url, options) {
    init(this, url, options);
    this.pace = {percent: null, rate: null, eta: null, message: null, step: null, taskId: null,
                 stalled: false, cancelRequested: false, ended: false};
    this._renewed = false;
    this._open();
    if (!this.source) {
      return;
    }
    if (this.options.cancelButton) {
      this._wireCancel(this.options.cancelButton);
    }
    var handlers = this.options.handlers || {};
    for (var name in handlers) {
      if (Object.prototype.hasOwnProperty.call(handlers, name)) {
        this.on(name, handlers[name]);
      }
    }
  }

  /** Connect to this.url, from lastEventId (a first connect, or one with a renewed token). */
  Stream.prototype._open = function () {
    if (!openAt(this)) {
      return;
    }
    var self = this;
    this.source.onopen = function () { self._setState("live"); };
    this.source.onerror = function () { self._onError(); };
    this.source.onmessage = function (e) { self._dispatch("message", e); };
    var names = [STREAM_CLOSED, STREAM_RESET, TOKEN_RENEWED, TOKEN_EXPIRED].concat(
      PACE_EVENTS, Object.keys(this._listening));
    this._listening = {};
    for (var i = 0; i < names.length; i++) {
      if (names[i] !== "message") {
        this._listen(names[i]);
      }
    }
  };

  /** Call fn(data, meta) for every `event`; returns the stream (chainable). */
  Stream.prototype.on = function (event, fn) {
    if (typeof event !== "string" || typeof fn !== "function") {
      report(this, new TypeError("on(event: string, fn: function)"), "on");
      return this;
    }
    (this.handlers[event] = this.handlers[event] || []).push(fn);
    if (event !== "message") {
      this._listen(event);
    }
    return this;
  };

  /** Remove a handler added with on(). */
  Stream.prototype.off = function (event, fn) {
    var list = this.handlers[event];
    if (list) {
      this.handlers[event] = list.filter(function (h) { return h !== fn; });
    }
    return this;
  };

  /** Stop the stream for good (no reconnect). */
  Stream.prototype.close = function () {
    if (this.source) {
      this.source.close();
    }
    this._setState("closed");
    if (this._cancelButton) {  // a closed stream lets go of its button
      this._cancelButton.hidden = true;
      this._cancelButton.removeEventListener("click", this._onCancelClick);
      this._cancelButton = null;
    }
  };

  Stream.prototype._listen = function (event) {
    if (!this.source || this._listening[event]) {
      return;
    }
    this._listening[event] = true;
    var self = this;
    this.source.addEventListener(event, function (e) { self._dispatch(event, e); });
  };

  Stream.prototype._dispatch = function (event, e) {
    if (this.state === "closed") {
      return;
    }
    if (e.lastEventId) {
      this.lastEventId = e.lastEventId;
    }
    if (this.state !== "live") {
      this._setState("live");
    }
    var data = parse(e.data);
    var meta = {id: e.lastEventId || null, event: event, raw: e.data};
    if (tokenEvent(this, event, data, meta)) {
      return;
    }
    if (event === STREAM_RESET && typeof this.options.onReset === "function") {
      this._call(this.options.onReset, data, meta);
    }
    if (PACE_EVENTS.indexOf(event) >= 0 || event === STREAM_CLOSED) {
      this._pace(event, data, meta);
    }
    var list = (this.handlers[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      this._call(list[i], data, meta);
    }
    if (event === STREAM_CLOSED) {
      this.close();
    }
  };

  /** Update stream.pace from one event and tell onPace. */
  Stream.prototype._pace = function (event, data, meta) {
    var pace = this.pace;
    var body = data && typeof data === "object" ? data : {};
    if (event === "progress") {
      pace.percent = typeof body.percent === "number" ? body.percent : pace.percent;
      pace.rate = typeof body.rate === "number" ? body.rate : null;
      pace.eta = typeof body.eta === "number" ? body.eta : null;
      pace.message = body.message == null ? null : String(body.message);
      pace.step = Array.isArray(body.step) ? body.step.join(" \u203a ") : null;
      pace.taskId = body.taskId || null;
      pace.stalled = false;
    } else if (event === "execution-stalled") {
      pace.stalled = true;
      pace.rate = pace.eta = null;  // a silent producer's last speed says nothing now
    } else if (event === "execution-resumed") {
      pace.stalled = false;
    } else if (event === "execution-cancel-requested") {
      pace.cancelRequested = true;
    } else {
      pace.ended = true;
      pace.stalled = false;
      pace.rate = pace.eta = null;
    }
    this._syncCancel();
    if (typeof this.options.onPace === "function") {
      this._call(this.options.onPace, pace, meta);
    }
  };

  /**
   * Ask the server to cancel the execution (POST to options.cancelUrl). Resolves to
   * {status, ok, body}: 202 accepted (ok), 409 already ended, 403 refused. The stream
   * then shows "execution-cancel-requested" and, once the producer stops,
   * "execution-cancelled".
   */
  Stream.prototype.cancel = function () {
    var url = this.options.cancelUrl;
    var send = this.options.fetch || root.fetch;
    if (!url || typeof send !== "function") {
      return Promise.reject(new Error(url ? "fetch is not available" : "no cancelUrl given"));
    }
    return send(url, {method: "POST", credentials: "same-origin",
                      headers: {"Accept": "application/json"}})
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          return {status: resp.status, ok: resp.status === 202, body: body};
        });
      });
  };

  Stream.prototype._wireCancel = function (button) {
    var self = this;
    this._cancelButton = button;
    button.disabled = false;
    this._onCancelClick = function (e) {
      if (e && e.preventDefault) { e.preventDefault(); }
      button.disabled = true;
      self.cancel().then(function (answer) {
        if (!answer.ok && answer.status !== 409) { button.disabled = false; }
      }, function (error) {
        button.disabled = false;
        report(self, error, "cancel");
      });
    };
    button.addEventListener("click", this._onCancelClick);
    this._syncCancel();
  };

  /** The cancel button: hidden once ended, disabled while a cancel is under way. */
  Stream.prototype._syncCancel = function () {
    var button = this._cancelButton;
    if (!button) {
      return;
    }
    button.hidden = this.pace.ended;
    if (this.pace.cancelRequested) {
      button.disabled = true;
    }
  };

  Stream.prototype._call = function (fn, data, meta) {
    try {
      fn.call(this, data, meta);
    } catch (error) {
      report(this, error, "handler for " + meta.event);
    }
  };

  Stream.prototype._onError = function () {
    if (this.state === "closed") {
      return;
    }
    // CLOSED: the server refused (204 after the end, 403, 404) and EventSource
    // gave up. Otherwise it is already retrying after the server's `retry:`.
    if (this.source.readyState === 2) {
      this._setState("closed");
    } else if (this._renewed) {
      reconnectRenewed(this, this._open);
    } else {
      this._setState("reconnecting");
    }
  };

  Stream.prototype._setState = function (state) {
    if (state === this.state) {
      return;
    }
    var previous = this.state;
    this.state = state;
    if (typeof this.options.onStateChange === "function") {
      try {
        this.options.onStateChange(state, previous);
      } catch (error) {
        report(this, error, "onStateChange");
      }
    }
  };

  var EXECUTION_ADDED = "execution-added";
  var EXECUTION_REMOVED = "execution-removed";
  /** Events a shared stream's tabs keep for tabs that open later. */
  var SHARED_HISTORY = 10000;
  /** Milliseconds a new tab waits for the history of the tab holding the stream. */
  var SYNC_WAIT_MS = 1500;

  function withParam(url, name, value) {
    var bare = url.replace(new RegExp("([?&])" + name + "=[^&]*&?"), "$1").replace(/[?&]$/, "");
    return bare + (bare.indexOf("?") < 0 ? "?" : "&") + name + "=" + encodeURIComponent(value);
  }

  /**
   * A stream of many executions. Use SSEExec.connectMany(url, options).
   * options: as for connect(), plus shareTabs bool and shareKey string (tabs
   * share a stream by URL without its token unless given a key).
   */
  function Many(url, options) {
    init(this, url, options);
    this.leader = false;
    this._positions = {};
    this._added = {};
    this._history = [];
    this._pending = null;
    this._channel = null;
    this._release = null;
    this._tab = Math.random().toString(36).slice(2);
    var handlers = this.options.handlers || {};
    for (var name in handlers) {
      if (Object.prototype.hasOwnProperty.call(handlers, name)) {
        this.on(name, handlers[name]);
      }
    }
    var nav = root.navigator;
    if (this.options.shareTabs && root.BroadcastChannel && nav && nav.locks) {
      this._share();
    } else {
      this._open();
    }
  }

  Many.prototype.on = Stream.prototype.on;
  Many.prototype.off = Stream.prototype.off;
  Many.prototype._setState = Stream.prototype._setState;
  Many.prototype._call = Stream.prototype._call;

  Many.prototype._listen = function (event) {
    this._listening[event] = true;
    if (!this.source) {
      return;
    }
    var self = this;
    this.source.addEventListener(event, function (e) { self._received(event, e.data, e.lastEventId); });
  };

  /** Open the connection (this tab holds the stream), resuming at the last cursor. */
  Many.prototype._open = function () {
    if (!openAt(this)) {
      return;
    }
    var self = this;
    this.source.onopen = function () { self._state("live"); };
    this.source.onerror = function () {
      if (self.state === "closed") {
        return;
      }
      if (self.source.readyState !== 2 && self._renewed) {
        reconnectRenewed(self, self._open);
      } else {
        self._state(self.source.readyState === 2 ? "closed" : "reconnecting");
      }
    };
    this.source.onmessage = function (e) { self._received("message", e.data, e.lastEventId); };
    var names = [STREAM_CLOSED, STREAM_RESET, TOKEN_RENEWED, TOKEN_EXPIRED, EXECUTION_ADDED,
                 EXECUTION_REMOVED].concat(
      Object.keys(this._listening));
    this._listening = {};
    for (var i = 0; i < names.length; i++) {
      if (names[i] !== "message" && !this._listening[names[i]]) {
        this._listen(names[i]);
      }
    }
  };

  /** An event off the connection: deliver it here and to the other tabs. */
  Many.prototype._received = function (event, raw, cursor) {
    if (this._channel) {
      this._channel.postMessage({type: "event", item: [event, raw, cursor]});
    }
    this._deliver(event, raw, cursor);
  };

  Many.prototype._state = function (state) {
    if (this._channel) {
      this._channel.postMessage({type: "state", state: state});
    }
    this._setState(state);
  };

  /** Hand one event to the handlers, once per execution and id. */
  Many.prototype._deliver = function (event, raw, cursor) {
    if (this.state === "closed" && !this._channel) {
      return;
    }
    if (this._channel) {
      this._history.push([event, raw, cursor]);
      if (this._history.length > SHARED_HISTORY) {
        this._history.shift();
      }
    }
    if (cursor) {
      this.lastEventId = cursor;
    }
    var body = parse(raw);
    if (tokenEvent(this, event, body, {executionId: null, id: null, event: event,
                                       cursor: cursor || null, raw: raw})) {
      return;  // (every tab takes the renewed URL: any of them may hold the stream next)
    }
    var wrapped = body && typeof body === "object" && typeof body.executionId === "string";
    var executionId = wrapped ? body.executionId : null;
    var data = body;
    var id = null;
    if (event === EXECUTION_ADDED) {
      if (this._added[executionId]) {
        return;
      }
      this._added[executionId] = true;
    } else if (event === EXECUTION_REMOVED) {
      delete this._added[executionId];  // announced again, it is replayed from its start
      delete this._positions[executionId];
    } else if (event === STREAM_RESET && !wrapped) {
      this._added = {};  // a feed's: it starts over, announcing what it follows
      this._positions = {};
    } else if (event === STREAM_RESET) {
      delete this._positions[executionId];  // its ids start again where history begins
    } else if (wrapped && typeof body.id === "number") {
      if (this._positions[executionId] >= body.id) {
        return;  // seen already (a tab's history overlapping what came live)
      }
      this._positions[executionId] = body.id;
      data = body.data;
      id = body.id;
    }
    var meta = {executionId: executionId, id: id, event: event, cursor: cursor || null, raw: raw};
    if (event === STREAM_RESET && typeof this.options.onReset === "function") {
      this._call(this.options.onReset, data, meta);
    }
    var list = (this.handlers[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      this._call(list[i], data, meta);
    }
  };

  /** Share one connection between the tabs showing this stream. */
  Many.prototype._share = function () {
    var key = "sse-exec:" + (this.options.shareKey || this.url.replace(/([?&])token=[^&]*&?/, "$1"));
    var self = this;
    this._channel = new root.BroadcastChannel(key);
    this._pending = [];
    this._channel.onmessage = function (e) { self._heard(e.data); };
    this._channel.postMessage({type: "hello", from: this._tab});
    setTimeout(function () { self._synced(); }, SYNC_WAIT_MS);
    root.navigator.locks.request(key, function () {
      if (self._closed) {
        return null;
      }
      self.leader = true;
      self._synced();
      self._open();
      return new Promise(function (resolve) { self._release = resolve; });
    });
  };

  Many.prototype._heard = function (msg) {
    if (!msg || this._closed) {
      return;
    }
    if (msg.type === "hello" && this.leader) {
      this._channel.postMessage({type: "history", to: msg.from, items: this._history.slice(),
                                 state: this.state});
    } else if (msg.type === "history" && msg.to === this._tab && this._pending) {
      var live = this._pending;
      this._pending = null;
      for (var i = 0; i < msg.items.length; i++) {
        this._deliver.apply(this, msg.items[i]);
      }
      for (var j = 0; j < live.length; j++) {
        this._deliver.apply(this, live[j]);
      }
      this._setState(msg.state);
    } else if (msg.type === "event" && !this.leader) {
      if (this._pending) {
        this._pending.push(msg.item);  // until the history arrives, to keep the order
      } else {
        this._deliver.apply(this, msg.item);
      }
    } else if (msg.type === "state" && !this.leader) {
      this._setState(msg.state);
    }
  };

  Many.prototype._synced = function () {
    var live = this._pending;
    this._pending = null;
    for (var i = 0; live && i < live.length; i++) {
      this._deliver.apply(this, live[i]);
    }
  };

  /** Stop for good in this tab (another tab sharing the stream takes it over). */
  Many.prototype.close = function () {
    this._closed = true;
    if (this.source) {
      this.source.close();
    }
    if (this._release) {
      this._release();
    }
    if (this._channel) {
      this._channel.close();
      this._channel = null;
    }
    this._setState("closed");
  };

  /** Seconds left in words: 42 -> "42 s left", 150 -> "about 3 min left"; "" for none. */
  function formatEta(seconds) {
    if (typeof seconds !== "number" || !(seconds >= 0)) {
      return "";
    }
    if (seconds < 60) {
      return Math.round(seconds) + " s left";
    }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) {
      return "about " + minutes + " min left";
    }
    return "about " + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min left";
  }

  /** A rate in words: 1230 -> "1230/s", 0.05 -> "3/min"; "" for none. */
  function formatRate(perSecond) {
    if (typeof perSecond !== "number" || !(perSecond >= 0)) {
      return "";
    }
    if (perSecond > 0 && perSecond < 1) {
      return Number((perSecond * 60).toPrecision(3)) + "/min";
    }
    return Number(perSecond.toPrecision(4)) + "/s";
  }

  return {
    STATES: STATES,
    formatEta: formatEta,
    formatRate: formatRate,
    Stream: Stream,
    Many: Many,
    /** Open a stream: SSEExec.connect(url, options) -> Stream. */
    connect: function (url, options) { return new Stream(url, options); },
    /** Open a stream of many executions: SSEExec.connectMany(url, options) -> Many. */
    connectMany: function (url, options) { return new Many(url, options); },
  };
});
