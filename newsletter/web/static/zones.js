// Time-zone menus: a search box narrows the options to those whose name or label matches.
(function () {
  "use strict";
  if (window.nlZoneSearch) { return; }
  window.nlZoneSearch = true;
  function setUp(box) {
    var select = document.getElementById(box.getAttribute("data-zone-search"));
    if (!select) { return; }
    box.hidden = false;
    box.addEventListener("input", function () {
      var words = box.value.toLowerCase().replace(/_/g, " ").split(/\s+/).filter(Boolean);
      var firstShown = null;
      select.querySelectorAll("option").forEach(function (option) {
        var text = (option.value + " " + option.textContent).toLowerCase().replace(/_/g, " ");
        var show = words.every(function (w) { return text.indexOf(w) !== -1; });
        option.hidden = !show;
        option.disabled = !show && !option.selected;
        if (show && firstShown === null) { firstShown = option; }
      });
      select.querySelectorAll("optgroup").forEach(function (group) {
        group.hidden = !group.querySelector("option:not([hidden])");
      });
      if (firstShown && select.selectedOptions.length && select.selectedOptions[0].hidden) {
        firstShown.selected = true;
      }
    });
  }
  function run() { document.querySelectorAll("input[data-zone-search]").forEach(setUp); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", run); } else { run(); }
})();
