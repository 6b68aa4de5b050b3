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
 *   - never throws: an event with no handler is ignored, an exception in a
 *     handler is reported to onError/console and the stream carries on.
 *
 *   const stream = SSEExec.connect(url, {
 *     handlers: {"task-complete": (data, meta) => render(data)},
 *     onStateChange: (state) => badge.textContent = state,
 *   });
 *   stream.on("execution-complete", showSummary);   // add handlers any time
 *   stream.lastEventId; stream.state; stream.close();
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
   * onReset fn(data), onError fn(error, context), withCredentials bool,
   * EventSource (a constructor, for tests).
   */
  function Stream(url, options) {
    this.url = url;
    this.options = options || {};
    this.state = "connecting";
    this.lastEventId = null;
    this.handlers = {};
    this.source = null;
    this._listening = {};
    var Source = this.options.EventSource || root.EventSource;
    if (typeof Source !== "function") {
      this._setState("closed");
      report(this, new Error("EventSource is not available"), "connect");
      return;
    }
    this.source = new Source(url, {withCredentials: !!this.options.withCredentials});
    var self = this;
    this.source.onopen = function () { self._setState("live"); };
    this.source.onerror = function () { self._onError(); };
    this.source.onmessage = function (e) { self._dispatch("message", e); };
    this._listen(STREAM_CLOSED);
    this._listen(STREAM_RESET);
    var handlers = this.options.handlers || {};
    for (var name in handlers) {
      if (Object.prototype.hasOwnProperty.call(handlers, name)) {
        this.on(name, handlers[name]);
      }
    }
  }

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
    if (event === STREAM_RESET && typeof this.options.onReset === "function") {
      this._call(this.options.onReset, data, meta);
    }
    var list = (this.handlers[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      this._call(list[i], data, meta);
    }
    if (event === STREAM_CLOSED) {
      this.close();
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

  return {
    STATES: STATES,
    Stream: Stream,
    /** Open a stream: SSEExec.connect(url, options) -> Stream. */
    connect: function (url, options) { return new Stream(url, options); },
  };
});
