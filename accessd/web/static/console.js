// accessd office console: the few things pages do in the browser (no inline script:
// the CSP forbids it). Live dashboard: server-sent events from /live refresh the
// alarm and door panels the moment something happens.
(function () {
  "use strict";
  function refresh(id) {
    var el = document.getElementById(id);
    if (el && window.htmx) { window.htmx.trigger(el, "refresh"); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    document.querySelectorAll("[data-back]").forEach(function (a) {
      a.addEventListener("click", function (e) {
        if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
      });
    });
    var live = document.getElementById("live");
    if (!live || live.dataset.live !== "on" || !window.EventSource) { return; }
    var es = new EventSource("/live");
    es.addEventListener("open", function () { live.dataset.stream = "open"; });
    es.addEventListener("error", function () { live.dataset.stream = "closed"; });
    es.addEventListener("alarm", function () { refresh("alarms"); refresh("doors"); });
    ["availability", "status", "event", "link"].forEach(function (kind) {
      es.addEventListener(kind, function (e) {
        if (kind === "link") {
          var d = JSON.parse(e.data);
          live.classList.toggle("down", !d.receiving);
          live.textContent = d.receiving ? "" : "NOT RECEIVING: " + (d.error || "");
        }
        refresh("doors");
      });
    });
  });
}());
