// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // After a form error, move focus to the summary so screen readers announce it.
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  // The archive's subscribe box: the reader's zone from the browser (blank: the practice's).
  var guesses = document.querySelectorAll("input[data-zone-guess]");
  for (var g = 0; g < guesses.length; g++) {
    try {
      guesses[g].value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      /* the server uses the practice's zone */
    }
  }

  // Pre-select the reader's time zone from the browser (they can still change it).
  var select = document.getElementById("timezone");
  if (!select || select.getAttribute("data-autofill") !== "1") return;
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone || zone === select.value) return;
  for (var i = 0; i < select.options.length; i++) {
    if (select.options[i].value === zone) {
      select.value = zone;
      var note = document.getElementById("timezone-note");
      if (note) note.textContent = "We've picked this from your device; change it if it's not right.";
      return;
    }
  }
})();
