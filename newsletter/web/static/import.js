// Admin import of a large file: poll its status (rows done, rows/s) and show the report when
// it is done (the page itself renders it). Without scripts the page has a Refresh link.
(function () {
  "use strict";
  var box = document.getElementById("import-progress");
  if (!box || box.getAttribute("data-state") !== "running") { return; }
  var url = box.getAttribute("data-status");
  function show(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = Number(value).toLocaleString(); }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { window.setTimeout(poll, 5000); return; }
        if (s.state !== "running") { window.location.reload(); return; }
        var bar = document.getElementById("import-bar");
        if (bar) { bar.max = Math.max(s.total, 1); bar.value = s.done; }
        show("import-done", s.done);
        show("import-total", s.total);
        show("import-rate", s.rows_per_s);
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
