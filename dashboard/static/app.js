// gorelay dashboard: live updates, relative times, confirmations.  No library.
//
// The server renders every page (escaped).  When the store changes, the
// websocket says so; the page then re-fetches itself and swaps the regions
// marked data-live.  If the socket drops, it reconnects with backoff and
// polls /api/version meanwhile.  Nothing here writes server data into
// innerHTML: swapped regions come from the server's own rendering.
(function () {
  "use strict";

  var body = document.body;
  var toggle = document.getElementById("live-toggle");
  var stamp = body.dataset.stamp || "";
  var socket = null;
  var retryDelay = 500;
  var reconnectTimer = null;
  var pollTimer = null;
  var refreshing = false;
  var refreshAgain = false;
  var lastRefresh = 0;
  var MIN_REFRESH_MS = 400;
  var POLL_MS = 2000;
  var paused = false;
  try { paused = window.localStorage.getItem("gorelay-live") === "paused"; } catch (e) { /* private mode */ }

  function setState(state, label) {
    body.dataset.liveState = state;
    if (!toggle) { return; }
    toggle.dataset.state = state;
    toggle.querySelector(".live-label").textContent = label;
    toggle.title = state === "paused" ? "Live updates paused: click to resume"
                                      : "Live updates: click to pause";
  }

  // -- refreshing the page's live regions ----------------------------------------
  function liveIds(doc) {
    return Array.prototype.map.call(doc.querySelectorAll("[data-live][id]"), function (el) { return el.id; });
  }

  function swap(doc) {
    var newMain = doc.querySelector("main");
    var oldMain = document.querySelector("main");
    if (!newMain || !oldMain) { return; }
    var oldIds = liveIds(document).join(" ");
    var newIds = liveIds(doc).join(" ");
    if (oldIds !== newIds) {
      oldMain.replaceWith(document.importNode(newMain, true));
    } else {
      doc.querySelectorAll("[data-live][id]").forEach(function (fresh) {
        var current = document.getElementById(fresh.id);
        if (current) { current.replaceWith(document.importNode(fresh, true)); }
      });
    }
    var newStamp = doc.body && doc.body.dataset.stamp;
    if (newStamp) { stamp = newStamp; body.dataset.stamp = newStamp; }
    body.dataset.refreshed = String(Date.now());
    tick();
  }

  function refresh() {
    if (paused) { return; }
    if (refreshing) { refreshAgain = true; return; }
    var wait = lastRefresh + MIN_REFRESH_MS - Date.now();
    if (wait > 0) { refreshing = true; setTimeout(function () { refreshing = false; refresh(); }, wait); return; }
    refreshing = true;
    lastRefresh = Date.now();
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Gorelay-Live": "1" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) { window.location.reload(); return null; }
        if (!response.ok) { return null; }
        return response.text();
      })
      .then(function (text) {
        if (text) { swap(new DOMParser().parseFromString(text, "text/html")); }
      })
      .catch(function () { /* next change or poll tries again */ })
      .then(function () {
        refreshing = false;
        if (refreshAgain) { refreshAgain = false; refresh(); }
      });
  }

  function seen(newStamp) {
    if (newStamp && newStamp !== stamp) { stamp = newStamp; refresh(); }
  }

  // -- websocket with reconnect, polling meanwhile --------------------------------
  function socketUrl() {
    var url = new URL(body.dataset.liveUrl, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  function connect() {
    if (paused || !body.dataset.liveUrl || !window.WebSocket) { startPolling(); return; }
    clearTimeout(reconnectTimer);
    try { socket = new WebSocket(socketUrl()); } catch (e) { scheduleReconnect(); return; }
    socket.onopen = function () {
      retryDelay = 500;
      stopPolling();
      setState("live", "Live");
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "hello" || message.type === "change") { seen(message.stamp); }
    };
    socket.onclose = function () {
      socket = null;
      if (!paused) { scheduleReconnect(); }
    };
    socket.onerror = function () { /* onclose follows */ };
  }

  function scheduleReconnect() {
    startPolling();
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  }

  function poll() {
    fetch(body.dataset.versionUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { seen(data.stamp); } })
      .catch(function () { /* the server may be restarting */ });
  }

  function startPolling() {
    if (paused) { return; }
    setState("polling", "Polling");
    if (!pollTimer && body.dataset.versionUrl) { pollTimer = setInterval(poll, POLL_MS); }
  }

  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function pause() {
    paused = true;
    stopPolling();
    clearTimeout(reconnectTimer);
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    setState("paused", "Paused");
  }

  if (toggle) {
    toggle.addEventListener("click", function () {
      if (paused) {
        paused = false;
        try { window.localStorage.removeItem("gorelay-live"); } catch (e) { /* ignore */ }
        setState("connecting", "Connecting");
        connect();
        refresh();
      } else {
        try { window.localStorage.setItem("gorelay-live", "paused"); } catch (e) { /* ignore */ }
        pause();
      }
    });
  }

  // -- relative times -----------------------------------------------------------
  function ago(ts) {
    var delta = Date.now() / 1000 - ts;
    var future = delta < 0;
    delta = Math.abs(delta);
    if (delta < 1) { return "now"; }
    var text;
    if (delta < 60) { text = Math.floor(delta) + " s"; }
    else if (delta < 3600) { text = Math.floor(delta / 60) + " min"; }
    else if (delta < 86400) { text = Math.floor(delta / 3600) + " h"; }
    else { text = Math.floor(delta / 86400) + " d"; }
    return future ? "in " + text : text + " ago";
  }

  function tick() {
    document.querySelectorAll("time[data-ts]").forEach(function (el) {
      var ts = parseFloat(el.dataset.ts);
      if (!isNaN(ts)) { el.textContent = ago(ts); }
    });
  }

  // -- confirmations --------------------------------------------------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form && form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  setInterval(tick, 1000);
  if (toggle) {
    if (paused) { setState("paused", "Paused"); } else { connect(); }
  }
})();
