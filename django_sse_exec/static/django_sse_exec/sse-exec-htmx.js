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
 */
(function () {
  "use strict";
  document.addEventListener("htmx:sseError", function (event) {
    var source = event.detail && event.detail.source;
    if (source && source.readyState === 2 && event.target && event.target.dispatchEvent) {
      event.target.dispatchEvent(new CustomEvent("sse-exec:closed", {bubbles: true}));
    }
  });
})();
