// Herald console: small progressive enhancements. Every page works without
// this file; with it, the compose page previews as you type and the
// progress page updates live.
"use strict";

(function () {
  // Compose: ask the server for the preview (the same analysis the send
  // uses) a moment after the last change, and show the mode's banner.
  var form = document.getElementById("compose");
  var out = document.getElementById("preview");
  if (form && out) {
    var timer = null;
    var seq = 0;
    var refresh = function () {
      var mine = ++seq;
      fetch("/console/compose/preview", {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin"
      }).then(function (r) {
        // A session that ended sends the page to the login.
        if (r.redirected) { window.location.href = r.url; return null; }
        return r.ok ? r.text() : null;
      })
        .then(function (html) {
          if (html !== null && mine === seq) { out.innerHTML = html; }
        })
        .catch(function () {});
    };
    var banners = function () {
      var mode = form.querySelector("input[name=mode]:checked");
      var value = mode ? mode.value : "";
      var ex = document.getElementById("exercise-banner");
      var live = document.getElementById("live-banner");
      if (ex) { ex.hidden = value !== "exercise"; }
      if (live) { live.hidden = value !== "live"; }
      document.body.classList.toggle("exercise-mode", value === "exercise");
    };
    var later = function () {
      banners();
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(refresh, 250);
    };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    banners();
  }

  // Progress: counters and the bar follow the broadcast over SSE.
  var live = document.getElementById("progress");
  if (live && live.dataset.events && window.EventSource) {
    var source = new EventSource(live.dataset.events);
    var show = function (e) {
      var v;
      try { v = JSON.parse(e.data); } catch (err) { return; }
      ["total", "queued", "submitted", "delivered", "failed", "expired", "canceled", "refused"].forEach(function (k) {
        var el = document.getElementById("count-" + k);
        if (el && typeof v[k] === "number") { el.textContent = v[k]; }
      });
      var final = v.status === "completed" || v.status === "canceled" || v.status === "rejected";
      var percent = v.total > 0 ? Math.floor((v.total - v.queued) * 100 / v.total) : (final ? 100 : 0);
      var bar = document.getElementById("bar");
      if (bar) { bar.value = percent; bar.textContent = percent + " %"; }
      var pct = document.getElementById("percent");
      if (pct) { pct.textContent = percent + " %"; }
      var st = document.getElementById("status");
      if (st && v.status) { st.textContent = v.status; }
      if (final) {
        source.close();
        var cancel = document.getElementById("cancel-form");
        if (cancel) { cancel.hidden = true; }
      }
    };
    source.addEventListener("progress", show);
    source.addEventListener("final", show);
  }
})();
