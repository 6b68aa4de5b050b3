/*
 * sse-exec-htmx.js: what the progress widget needs besides htmx and its SSE
 * extension, served by {% sse_exec_scripts %}.
 *
 * When the browser gives up on a widget's stream for good (a 403, 404, 429 or
 * 204 closes an EventSource: readyState 2), this fires "sse-exec:closed" on the
 * element that holds the stream; the widget's refresh listens for it
 * (hx-trigger="sse-exec:closed from:closest .sse-exec"). A passing failure (the
 * browser reconnects by itself) fires nothing. The test is made here rather
 * than in an htmx trigger filter ([detail.source.readyState==2]), which htmx
 * compiles with Function(): refused under a Content-Security-Policy without
 * 'unsafe-eval', and by htmx.config.allowEval = false.
 *
 * Tokens: the extension's EventSource is wrapped (htmx.createEventSource) so
 * that a stream's "stream-token-renewed" is kept and, when the connection
 * drops, the stream reconnects with the renewed URL from its last event id
 * (the extension's listeners stay, nothing is lost or shown twice). On
 * "stream-token-expired" the wrapper closes for good, the element loses its
 * sse-connect (so the extension does not retry the dead URL) and the widget's
 * refresh shows why.
 */
(function () {
  "use strict";
  var RENEWED = "stream-token-renewed";
  var EXPIRED = "stream-token-expired";

  function withPosition(url, lastEventId) {
    if (!lastEventId) {
      return url;
    }
    var bare = url.replace(/([?&])last_event_id=[^&]*&?/, "$1").replace(/[?&]$/, "");
    return bare + (bare.indexOf("?") < 0 ? "?" : "&") + "last_event_id=" + encodeURIComponent(lastEventId);
  }

  /** An EventSource look-alike that reconnects with a renewed token. */
  function RenewingSource(url, init) {
    this.url = url;
    this.init = init;
    this.listeners = {};
    this.onopen = this.onerror = this.onmessage = null;
    this.lastEventId = "";
    this.renewed = false;
    this.expired = false;
    this.element = null;
    this._open(url);
  }

  RenewingSource.prototype._open = function (url) {
    var self = this;
    var source = this.source = new EventSource(url, this.init);
    source.onopen = function (e) {
      if (source === self.source && self.onopen) { self.onopen(e); }
    };
    source.onerror = function (e) {
      if (source !== self.source) {
        return;
      }
      if (self.renewed && source.readyState !== 2) {  // dropped: come back with the new token
        self.renewed = false;
        source.close();
        window.setTimeout(function () {
          if (source === self.source) { self._open(withPosition(self.url, self.lastEventId)); }
        }, 1000 + Math.random() * 1000);
        return;
      }
      if (self.onerror) { self.onerror(e); }
    };
    source.onmessage = function (e) { self._seen(e); if (self.onmessage) { self.onmessage(e); } };
    source.addEventListener(RENEWED, function (e) {
      try {
        var renewed = JSON.parse(e.data);
        self.url = renewed.url || self.url;
        self.renewed = true;
        self._renewRefresh(renewed.token);
      } catch (ignored) { /* not the app's event: ignore it */ }
    });
    source.addEventListener(EXPIRED, function () { self._expired(); });
    Object.keys(this.listeners).forEach(function (name) { self._relay(name); });
  };

  /** The widget's refresh (asked when its stream is refused) carries the token too. */
  RenewingSource.prototype._renewRefresh = function (token) {
    var root = this.element && (this.element.closest(".sse-exec") || this.element);
    if (!root || typeof token !== "string") { return; }
    root.querySelectorAll("[hx-get]").forEach(function (el) {
      var url = el.getAttribute("hx-get");
      if (/[?&]token=/.test(url)) {
        el.setAttribute("hx-get", url.replace(/([?&]token=)[^&]*/, "$1" + encodeURIComponent(token)));
        if (window.htmx) { htmx.process(el); }  // htmx reads hx-get when it processes a node
      }
    });
  };

  RenewingSource.prototype._seen = function (e) {
    if (e.lastEventId) { this.lastEventId = e.lastEventId; }
  };

  RenewingSource.prototype._relay = function (name) {
    var self = this;
    this.source.addEventListener(name, function (e) {
      self._seen(e);
      (self.listeners[name] || []).slice().forEach(function (fn) { fn.call(self, e); });
    });
  };

  RenewingSource.prototype._expired = function () {
    this.expired = true;
    this.source.close();
    if (this.element) {  // the extension would open the dead URL again and again
      this.element.removeAttribute("sse-connect");
      this.element.removeAttribute("data-sse-connect");
    }
    if (this.onerror) { this.onerror(new Event("error")); }  // readyState 2: sse-exec:closed
  };

  Object.defineProperty(RenewingSource.prototype, "readyState", {
    get: function () { return this.expired ? 2 : this.source.readyState; }
  });

  RenewingSource.prototype.addEventListener = function (name, fn) {
    if (!this.listeners[name]) {
      this.listeners[name] = [];
      this._relay(name);
    }
    this.listeners[name].push(fn);
  };

  RenewingSource.prototype.removeEventListener = function (name, fn) {
    var list = this.listeners[name];
    if (list) { this.listeners[name] = list.filter(function (h) { return h !== fn; }); }
  };

  RenewingSource.prototype.close = function () {
    this.expired = true;
    this.source.close();
  };

  if (window.htmx) {
    htmx.createEventSource = function (url) { return new RenewingSource(url, {withCredentials: true}); };
  }
  document.addEventListener("htmx:sseOpen", function (event) {
    var source = event.detail && event.detail.source;
    if (source instanceof RenewingSource) { source.element = event.target; }
  });
  document.addEventListener("htmx:sseError", function (event) {
    var source = event.detail && event.detail.source;
    if (source && source.readyState === 2 && event.target && event.target.dispatchEvent) {
      event.target.dispatchEvent(new CustomEvent("sse-exec:closed", {bubbles: true}));
    }
  });
})();
