/*
 * The demo dashboard: start, watch, cancel and reopen executions.
 *
 * Cancel is SSEExec's own control (cancelUrl + cancelButton: it posts to the
 * app's signed cancel URL); the step, rate, time left and stalls come from
 * SSEExec's stream.pace (onPace).
 *
 * Everything on screen is derived from the execution's events, so a reload, a
 * second tab or a reopened finished execution rebuilds the same view from the
 * stream's replay. window.dashboard exposes the state for the browser tests.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var STATE_LABELS = {idle: "Idle", connecting: "Connecting", live: "Live",
                      reconnecting: "Reconnecting…", closed: "Ended"};
  var STATUS_LABELS = {pending: "Waiting", running: "Running", success: "Succeeded",
                       failed: "Failed", cancelled: "Cancelled"};
  var VIEWERS_EVERY_MS = 1000;
  var CANCELLING = "Cancelling\u2026";

  var view = {
    executionId: null, stream: null, total: 0, completed: 0, status: "pending",
    tasks: new Map(), summary: null, eventIds: [], viewers: null, cancelUrl: "",
    timer: null, pace: null,
  };
  window.dashboard = view;

  // -- formatting -----------------------------------------------------------

  function seconds(ms) {
    if (ms == null) { return ""; }
    return ms < 10000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms / 1000) + " s";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text != null) { node.textContent = text; }
    return node;
  }

  // -- rendering --------------------------------------------------------------

  function setConnState(state) {
    var pill = $("conn-state");
    pill.className = "pill pill-" + state;
    pill.dataset.state = state;
    pill.lastElementChild.textContent = STATE_LABELS[state] || state;
    $("viewers").hidden = state === "closed" || state === "idle" || view.viewers == null;
  }

  function setStatus(status) {
    view.status = status;
    var badge = $("status");
    badge.className = "badge badge-" + status;
    badge.dataset.status = status;
    badge.textContent = STATUS_LABELS[status] || status;
    $("execution").dataset.status = status;
    // Only runs this browser started come with a cancel URL.
    $("cancel").hidden = status !== "running" || !view.cancelUrl;
  }

  function renderProgress() {
    var pct = view.total ? Math.round(100 * view.completed / view.total) : 0;
    var pace = view.pace;
    if (pace && typeof pace.percent === "number" && view.status === "running") {
      pct = Math.max(pct, Math.floor(pace.percent));  // steps roll the running task in
    }
    $("progress-bar").style.width = pct + "%";
    $("progress").setAttribute("aria-valuenow", String(pct));
    $("progress-text").textContent = pct + "\u00a0%";
    var failed = 0;
    view.tasks.forEach(function (t) { if (t.status === "failed") { failed++; } });
    $("progress-count").textContent = view.completed + " of " + view.total + " tasks" +
      (failed ? " · " + failed + " failed" : "");
    // The share of the filled bar that succeeded (a failed run shows green, then red).
    var ended = Math.max(1, view.completed);
    $("progress-bar").style.setProperty("--ok", Math.round(100 * (ended - failed) / ended) + "%");
  }

  function renderTasks() {
    var list = $("task-list");
    var rows = [];
    view.tasks.forEach(function (task) { rows.push(task); });
    for (var i = rows.length; i < view.total; i++) {
      rows.push({taskId: null, title: "Task " + (i + 1), status: "pending"});
    }
    var finalStatus = view.summary && view.summary.status;
    list.replaceChildren.apply(list, rows.map(function (task) {
      var status = task.status;
      if (finalStatus === "cancelled" && (status === "pending" || status === "running")) {
        status = "cancelled";
      }
      var li = el("li", "task");
      li.dataset.status = status;
      if (task.taskId) { li.dataset.taskId = task.taskId; }
      li.appendChild(el("span", "task-dot"));
      var title = el("span", "task-title", task.title);
      if (task.error) { title.appendChild(el("span", "task-error", task.error)); }
      li.appendChild(title);
      var side = el("span", "task-side");
      side.appendChild(el("span", "task-status", status));
      var duration = task.duration;
      if (status === "running" && task.startedAt) { duration = Date.now() - task.startedAt; }
      side.appendChild(el("span", "task-duration", seconds(duration)));
      li.appendChild(side);
      return li;
    }));
  }

  function renderSummary() {
    var s = view.summary;
    $("summary").hidden = !s;
    if (!s) { return; }
    $("sum-successful").textContent = s.successful;
    $("sum-failed").textContent = s.failed;
    $("sum-cancelled").textContent = s.cancelled;
    $("sum-duration").textContent = seconds(s.totalDuration);
  }

  /* The pace line: the step, the rate and the time left (SSEExec's stream.pace). */
  function renderPace(pace) {
    view.pace = pace;
    var running = view.status === "running" && !pace.ended;
    var parts = running ? [pace.step, SSEExec.formatRate(pace.rate),
                           SSEExec.formatEta(pace.eta)].filter(Boolean) : [];
    $("pace").textContent = parts.join(" \u00b7 ");
    $("pace").hidden = !parts.length;
    $("stalled").hidden = !(running && pace.stalled);
    if (running && pace.cancelRequested) {
      showMessage(CANCELLING);
    } else if (!running && $("message").textContent === CANCELLING) {
      showMessage("");
    }
    renderProgress();
  }

  function render() {
    renderProgress();
    renderTasks();
    renderSummary();
  }

  function showMessage(text) {
    $("message").textContent = text || "";
    $("message").hidden = !text;
  }

  // -- the execution's events -------------------------------------------------

  function task(data) {
    var t = view.tasks.get(data.taskId);
    if (!t) {
      t = {taskId: data.taskId, title: data.taskTitle || data.taskId, status: "pending"};
      view.tasks.set(data.taskId, t);
    }
    return t;
  }

  function noteProgress(data) {
    if (typeof data.total === "number") { view.total = data.total; }
    if (typeof data.progress === "number") { view.completed = Math.max(view.completed, data.progress); }
  }

  function finish(data) {
    view.summary = data;
    view.completed = data.completed;
    view.total = data.total;
    (data.results || []).forEach(function (r) {
      var t = task(r);
      t.status = r.status; t.duration = r.duration; t.error = r.error;
    });
    setStatus(data.status);
    render();
  }

  var handlers = {
    "execution-start": function (data) {
      view.total = data.totalTasks;
      setStatus("running");
      render();
    },
    "task-start": function (data) {
      var t = task(data);
      t.status = "running";
      t.startedAt = Date.now();
      noteProgress(data);
      render();
    },
    "task-complete": function (data) { taskEnded(data); },
    "task-fail": function (data) { taskEnded(data); },
    "execution-complete": finish,
    "execution-cancelled": finish,
    // The pace line reads these through onPace; listed so every event id is recorded.
    "progress": function () {},
    "execution-stalled": function () {},
    "execution-resumed": function () {},
    "execution-cancel-requested": function () {},
    "stream-reset": function () {
      resetView();
      showMessage("The server no longer has this execution's earlier events (history " +
                  "trimmed, or an in-memory server restarted); showing what it still has.");
    },
    "stream-closed": function () { stopViewers(); render(); },
  };

  function taskEnded(data) {
    var t = task(data);
    t.status = data.status;
    t.duration = data.duration;
    t.error = data.error;
    noteProgress(data);
    render();
  }

  function recordId(data, meta) {
    if (meta.id) {
      view.eventIds.push(Number(meta.id));
      $("last-event-id").textContent = meta.id;
    }
  }

  // -- opening an execution ---------------------------------------------------

  function resetView() {
    view.total = 0; view.completed = 0; view.summary = null;
    view.tasks = new Map();
    setStatus("pending");
    showMessage("");
    render();
  }

  function open(executionId, streamUrl, cancelUrl) {
    if (view.stream) { view.stream.close(); }
    stopViewers();
    view.executionId = executionId;
    view.eventIds = [];
    view.viewers = null;
    view.cancelUrl = cancelUrl || "";
    view.pace = null;
    $("pace").hidden = true;
    $("stalled").hidden = true;
    $("empty").hidden = true;
    $("execution").hidden = false;
    $("execution-id").textContent = executionId;
    resetView();
    var options = {handlers: {}, onStateChange: setConnState, onPace: renderPace,
                   cancelUrl: view.cancelUrl || null,
                   cancelButton: view.cancelUrl ? $("cancel") : null};
    Object.keys(handlers).forEach(function (name) {
      options.handlers[name] = function (data, meta) { recordId(data, meta); handlers[name](data, meta); };
    });
    setConnState("connecting");
    view.stream = SSEExec.connect(streamUrl, options);
    startViewers();
    markCurrent();
  }

  // -- viewers and recent executions ------------------------------------------

  function pollViewers() {
    var id = view.executionId;
    fetch("/demo/executions/" + encodeURIComponent(id)).then(function (resp) {
      return resp.ok ? resp.json() : null;
    }).then(function (info) {
      if (!info || id !== view.executionId) { return; }
      view.viewers = info.viewers;
      $("viewers-count").textContent = info.viewers;
      setConnState(view.stream ? view.stream.state : "idle");
    }).catch(function () { /* the server is restarting; the next poll retries */ });
  }

  function startViewers() {
    pollViewers();
    view.timer = setInterval(function () {
      pollViewers();
      if (view.status === "running") { renderTasks(); }  // tick running durations
    }, VIEWERS_EVERY_MS);
  }

  function stopViewers() {
    if (view.timer) { clearInterval(view.timer); view.timer = null; }
  }

  function markCurrent() {
    Array.prototype.forEach.call(document.querySelectorAll("#recent a"), function (a) {
      a.classList.toggle("current", a.dataset.executionId === view.executionId);
    });
  }

  /* The recent list: every execution of this browser's feed, live over ONE
   * connection shared by all its tabs (SSEExec.connectMany, shareTabs). */
  var recent = {rows: new Map(), stream: null};
  view.recent = recent;

  function recentRow(executionId) {
    var row = recent.rows.get(executionId);
    if (row) { return row; }
    row = {executionId: executionId, total: 0, completed: 0, failed: 0, status: "pending",
           li: el("li")};
    row.li.dataset.executionId = executionId;
    var a = el("a");
    a.href = "?execution=" + encodeURIComponent(executionId);
    a.dataset.executionId = executionId;
    var left = el("span", "recent-left");
    left.appendChild(el("code", "", executionId));
    row.meta = left.appendChild(el("span", "meta", ""));
    var bar = left.appendChild(el("span", "mini-progress"));
    row.bar = bar.appendChild(el("span", "mini-bar"));
    a.appendChild(left);
    row.badge = a.appendChild(el("span", "badge", ""));
    row.li.appendChild(a);
    recent.rows.set(executionId, row);
    var list = $("recent");
    var placeholder = list.querySelector(".muted");
    if (placeholder) { placeholder.remove(); }
    list.insertBefore(row.li, list.firstChild);  // newest first
    renderRow(row);
    markCurrent();
    return row;
  }

  function renderRow(row) {
    var pct = row.total ? Math.round(100 * row.completed / row.total) : 0;
    row.bar.style.width = pct + "%";
    row.li.dataset.status = row.status;
    row.li.dataset.progress = String(pct);
    row.meta.textContent = row.completed + " of " + row.total + " tasks" +
      (row.failed ? " · " + row.failed + " failed" : "");
    row.badge.className = "badge badge-" + row.status;
    row.badge.textContent = STATUS_LABELS[row.status] || row.status;
  }

  function onRow(update) {
    return function (data, meta) {
      var row = recentRow(meta.executionId);
      update(row, data || {});
      renderRow(row);
    };
  }

  function rowProgress(row, data) {
    if (typeof data.total === "number") { row.total = data.total; }
    if (typeof data.progress === "number") { row.completed = Math.max(row.completed, data.progress); }
    if (row.status === "pending") { row.status = "running"; }
  }

  function rowEnded(row, data) {
    row.status = data.status || row.status;
    if (typeof data.completed === "number") { row.completed = data.completed; }
    if (typeof data.total === "number") { row.total = data.total; }
    if (typeof data.failed === "number") { row.failed = data.failed; }
  }

  function followRecent(url) {
    if (!url || !window.SSEExec || !SSEExec.connectMany) { return; }
    recent.stream = SSEExec.connectMany(url, {shareTabs: true, handlers: {
      "execution-added": onRow(function () {}),
      "execution-start": onRow(function (row, data) { row.total = data.totalTasks; row.status = "running"; }),
      "task-start": onRow(rowProgress),
      "task-complete": onRow(rowProgress),
      "task-fail": onRow(function (row, data) { rowProgress(row, data); row.failed++; }),
      "execution-complete": onRow(rowEnded),
      "execution-cancelled": onRow(rowEnded),
      "stream-reset": onRow(function (row) { row.completed = 0; row.failed = 0; }),
    }});
  }

  $("fail-rate").addEventListener("input", function (e) {
    $("fail-rate-out").textContent = e.target.value + "\u00a0%";
  });

  $("start-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var button = $("start");
    button.disabled = true;
    var speed = document.querySelector("input[name=speed]:checked");
    fetch("/demo/executions", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({
        tasks: Number($("tasks").value) || 1,
        failRate: Number($("fail-rate").value) / 100,
        delayMs: Number(speed ? speed.value : 400),
        steps: $("steps").checked,
        stall: $("stall").checked,
      }),
    }).then(function (resp) {
      if (resp.status !== 201) { throw new Error("start failed: HTTP " + resp.status); }
      return resp.json();
    }).then(function (body) {
      history.pushState(null, "", "?execution=" + encodeURIComponent(body.executionId));
      open(body.executionId, body.streamUrl, body.cancelUrl);
    }).catch(function (err) {
      showMessage(String(err.message || err));
    }).finally(function () {
      button.disabled = false;
    });
  });

  window.addEventListener("popstate", function () { location.reload(); });

  // -- start ------------------------------------------------------------------

  var initial = document.body.dataset;
  followRecent(initial.feedUrl);
  if (initial.executionId && initial.streamUrl) {
    open(initial.executionId, initial.streamUrl, initial.cancelUrl);
  }
})();
