// Herald console: small progressive enhancements. Every page works without
// this file; with it, the compose page previews as you type and the
// progress page updates live.
"use strict";

(function () {
  // Compose: ask the server for the preview (the same analysis the send
  // uses) a moment after the last keystroke.
  var form = document.getElementById("compose");
  var out = document.getElementById("preview");
  if (form && out) {
    var timer = null;
    var seq = 0;
    var refresh = function () {
      var mine = ++seq;
      var body = new URLSearchParams(new FormData(form));
      fetch("/console/compose/preview", {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" }
      }).then(function (r) { return r.ok || r.status === 422 ? r.text() : null; })
        .then(function (html) {
          if (html !== null && mine === seq) { out.innerHTML = html; }
        })
        .catch(function () {});
    };
    var later = function () {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(refresh, 250);
    };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
  }

  // Progress: counters and the bar follow the broadcast over SSE.
  var live = document.getElementById("progress");
  if (live && live.dataset.events && window.EventSource) {
    var source = new EventSource(live.dataset.events);
    source.addEventListener("progress", function (e) {
      var v;
      try { v = JSON.parse(e.data); } catch (err) { return; }
      Object.keys(v).forEach(function (k) {
        var el = document.getElementById("count-" + k);
        if (el) { el.textContent = v[k]; }
      });
      var bar = document.getElementById("bar");
      if (bar && typeof v.percent === "number") {
        bar.value = v.percent;
        bar.textContent = v.percent + " %";
      }
      var pct = document.getElementById("percent");
      if (pct && typeof v.percent === "number") { pct.textContent = v.percent + " %"; }
      var st = document.getElementById("status");
      if (st && v.status) { st.textContent = v.status; }
      if (v.final) {
        source.close();
        var cancel = document.getElementById("cancel-form");
        if (cancel) { cancel.hidden = true; }
      }
    });
    source.addEventListener("end", function () { source.close(); });
  }
})();
