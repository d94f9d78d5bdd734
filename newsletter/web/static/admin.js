// Admin: when a start date changes, show the first date the series' send day falls on.
(function () {
  "use strict";
  var DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function update(input) {
    var target = document.getElementById(input.getAttribute("data-first"));
    var parts = (input.value || "").split("-");
    if (!target || parts.length !== 3) { return; }
    var date = new Date(Date.UTC(+parts[0], +parts[1] - 1, +parts[2]));
    var wanted = (+input.getAttribute("data-send-day") + 1) % 7; // 0 = Monday -> JS 1
    date.setUTCDate(date.getUTCDate() + ((wanted - date.getUTCDay() + 7) % 7));
    var day = String(date.getUTCDate());  // "Tue 5 Jan 2027", as web/dates.py writes it
    target.textContent = DAYS[date.getUTCDay()] + " " + day + " " + MONTHS[date.getUTCMonth()] + " " + date.getUTCFullYear();
  }
  document.querySelectorAll("input[data-send-day]").forEach(function (input) {
    input.addEventListener("change", function () { update(input); });
    input.addEventListener("input", function () { update(input); });
  });
})();

// Phone width: tables become stacked cards; each cell is labelled with its column's heading
// (cells of a row that shares a row-spanning heading line up from the right). Without scripts
// the tables scroll inside their own box instead (admin.css).
(function () {
  "use strict";
  document.querySelectorAll("table.table").forEach(function (table) {
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    if (!heads.length) { return; }
    table.querySelectorAll("tbody tr").forEach(function (row) {
      var cells = row.children;
      var offset = heads.length - cells.length;
      if (cells.length === 1 && cells[0].hasAttribute("colspan")) { return; }
      Array.prototype.forEach.call(cells, function (cell, i) {
        var label = heads[i + offset];
        if (label && !cell.hasAttribute("data-label")) { cell.setAttribute("data-label", label); }
      });
    });
    table.classList.add("stacked");
  });
})();
