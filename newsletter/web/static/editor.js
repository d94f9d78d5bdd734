// Admin series editor: add, move and remove parts; character counters; the live preview of the
// part being written (debounced); a draft of everything typed kept in this browser's
// localStorage (key "newsletter-editor:<slug>" or "newsletter-editor:new") until it is saved.
// The same component serves one letter (the broadcasts page): a form with data-letter="broadcast"
// and no #parts is its own single part, previewed through the same endpoint, without drafts.
(function () {
  "use strict";
  var form = document.getElementById("editor-form");
  if (!form) { return; }
  var partsBox = document.getElementById("parts");
  var template = document.getElementById("part-template");
  var previewForm = document.getElementById("preview-form");
  var frameBox = document.getElementById("frame-box");
  var plain = document.getElementById("plain-text");
  var statusLine = document.getElementById("preview-status");
  var key = form.getAttribute("data-draft-key");
  var letterKind = form.getAttribute("data-letter") || "";
  var single = !partsBox;
  var phoneSubject = +form.getAttribute("data-phone-subject");
  var FIELDS = ["title", "summary", "body"];
  var state = { width: "desktop", dark: false, plain: false, part: 0 };
  var timer = null;
  var draftTimer = null;

  function byId(id) { return document.getElementById(id); }
  function parts() { return single ? [form] : Array.prototype.slice.call(partsBox.querySelectorAll("fieldset[data-part]")); }
  function field(fs, name) { return fs.querySelector("[data-field=" + name + "]"); }
  function length(text) { return Array.from(text.trim()).length; }

  function renumber() {
    parts().forEach(function (fs, i) {
      var n = i + 1;
      fs.querySelector("[data-part-number]").textContent = n;
      FIELDS.forEach(function (name) {
        var el = field(fs, name);
        el.id = "part-" + n + "-" + name;
        fs.querySelector("label[data-for=" + name + "]").setAttribute("for", el.id);
      });
    });
  }

  function count(input) {
    var name = input.getAttribute("data-field");
    var out = input.parentNode.querySelector("[data-counter-for=" + name + "]");
    if (!out) { return; }
    var n = length(input.value), limit = +input.getAttribute("data-count");
    var words = n + " characters: ";
    if (n === 0) {
      words = "";
    } else if (n > limit) {
      words += "inbox lists cut it after about " + limit + ".";
    } else if (name === "title" && n > phoneSubject) {
      words += "computers show it all, phones about the first " + phoneSubject + ".";
    } else {
      words += "shown in full.";
    }
    out.textContent = words;
    out.classList.toggle("over", n > limit);
  }

  function cut(text, limit) {
    var chars = Array.from(text);
    return chars.length > limit ? chars.slice(0, limit - 1).join("").trimEnd() + "…" : text;
  }

  function current() {
    var list = parts();
    if (state.part >= list.length) { state.part = list.length - 1; }
    if (state.part < 0) { state.part = 0; }
    return list[state.part];
  }

  function slugValue() {
    var el = form.querySelector("[data-field=slug]");
    return el ? el.value : "";
  }

  function refresh() {
    var fs = current();
    if (!fs) { return; }
    var values = {
      series_title: single ? field(fs, "title").value : byId("title").value,
      slug: slugValue(),
      number: state.part + 1,
      count: parts().length,
      title: field(fs, "title").value,
      summary: field(fs, "summary").value,
      body: field(fs, "body").value,
      mode: state.dark ? "dark" : "light",
      kind: letterKind
    };
    if (byId("preview-number")) { byId("preview-number").textContent = values.number; }
    Object.keys(values).forEach(function (name) { previewForm.elements.namedItem(name).value = values[name]; });
    if (!state.plain) { previewForm.submit(); }
    fetch("/admin/series-editor/preview", { method: "POST", body: new FormData(previewForm), credentials: "same-origin" })
      .then(function (r) {
        if (r.ok) { return r.json(); }
        // a refusal with a reason (the part is too long to preview) says it; others don't
        return r.json().then(function (d) { return Promise.reject(d.error); }, function () { return Promise.reject(null); });
      })
      .then(function (data) {
        var subjectLimit = state.width === "phone" ? phoneSubject : data.limits.subject;
        byId("inbox-subject").textContent = cut(data.subject, subjectLimit);
        byId("inbox-preheader").textContent = cut(data.preheader, data.limits.preview);
        plain.textContent = data.text;
        statusLine.textContent = "";
      })
      .catch(function (reason) {
        statusLine.textContent = typeof reason === "string" ? reason : "The preview could not be updated; your text is safe. Are you still signed in?";
      });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  // --- drafts ---------------------------------------------------------------------------
  function snapshot() {
    return {
      fields: {
        title: byId("title").value,
        slug: slugValue(),
        description: byId("description").value,
        send_day: byId("send_day").value,
        send_time: byId("send_time").value,
        cadence: byId("cadence").value
      },
      parts: parts().map(function (fs) {
        return {
          filename: fs.querySelector("input[name=part_filename]").value,
          title: field(fs, "title").value,
          summary: field(fs, "summary").value,
          body: field(fs, "body").value
        };
      })
    };
  }
  function same(a, b) { return JSON.stringify([a.fields, a.parts]) === JSON.stringify([b.fields, b.parts]); }
  var initial = single ? null : snapshot();

  function saveDraft() {
    try {
      var now = snapshot();
      if (same(now, initial)) {
        localStorage.removeItem(key);
      } else {
        now.saved_at = new Date().toISOString();
        localStorage.setItem(key, JSON.stringify(now));
      }
    } catch (e) { /* private mode or full storage: the form still holds the text */ }
  }
  function draftLater() {
    if (single) { return; }
    clearTimeout(draftTimer);
    draftTimer = setTimeout(saveDraft, 300);
  }

  function newPart() {
    var fs = template.content.firstElementChild.cloneNode(true);
    partsBox.appendChild(fs);
    return fs;
  }

  function restore(draft) {
    ["title", "description", "send_day", "send_time", "cadence"].forEach(function (name) {
      if (draft.fields[name] !== undefined) { byId(name).value = draft.fields[name]; }
    });
    var slug = form.querySelector("input[data-field=slug][type=text]");
    if (slug) { slug.value = draft.fields.slug || ""; }
    var locked = parts().filter(function (fs) { return fs.hasAttribute("data-locked"); });
    var lockedNames = locked.map(function (fs) { return fs.querySelector("input[name=part_filename]").value; });
    parts().forEach(function (fs) { if (!fs.hasAttribute("data-locked")) { fs.remove(); } });
    draft.parts.forEach(function (p) {
      if (p.filename && lockedNames.indexOf(p.filename) >= 0) { return; }
      var fs = newPart();
      fs.querySelector("input[name=part_filename]").value = p.filename || "";
      FIELDS.forEach(function (name) { field(fs, name).value = p[name] || ""; });
    });
    renumber();
  }

  function when(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "earlier" : d.toLocaleString(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  }

  var params = new URLSearchParams(location.search);
  if (single) {
    /* one letter: no drafts kept */
  } else if (params.has("saved") || params.has("created")) {
    try {
      localStorage.removeItem(key);
      if (params.has("created")) { localStorage.removeItem("newsletter-editor:new"); }
    } catch (e) { /* nothing kept */ }
    history.replaceState(null, "", location.pathname);
  } else {
    var stored = null;
    try { stored = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { stored = null; }
    if (stored && stored.fields && stored.parts && !same(stored, initial)) {
      restore(stored);
      byId("draft-notice-text").textContent = "Restored the draft you were writing (" + when(stored.saved_at) +
        "); it is not saved to the series files yet. Save it, or discard it to see the files as they are.";
      byId("draft-notice").hidden = false;
    }
  }
  if (!single) {
    byId("discard-draft").addEventListener("click", function () {
      try { localStorage.removeItem(key); } catch (e) { /* nothing kept */ }
      location.assign(form.getAttribute("action"));
    });
  }

  // --- events ---------------------------------------------------------------------------
  form.addEventListener("input", function (event) {
    var fs = event.target.closest("fieldset[data-part]");
    if (fs) { state.part = parts().indexOf(fs); }
    if (event.target.hasAttribute("data-count")) { count(event.target); }
    later();
    draftLater();
  });
  form.addEventListener("change", draftLater);
  form.addEventListener("focusin", function (event) {
    var fs = event.target.closest("fieldset[data-part]");
    if (fs && parts().indexOf(fs) !== state.part) { state.part = parts().indexOf(fs); later(); }
  });

  if (!single) { partsBox.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var fs = button.closest("fieldset[data-part]");
    var action = button.getAttribute("data-action");
    if (action === "preview") {
      state.part = parts().indexOf(fs);
      refresh();
      byId("preview").scrollIntoView({ block: "start" });
      return;
    }
    if (action === "up") {
      var before = fs.previousElementSibling;
      if (before && !before.hasAttribute("data-locked")) { partsBox.insertBefore(fs, before); }
    } else if (action === "down") {
      var after = fs.nextElementSibling;
      if (after) { partsBox.insertBefore(after, fs); }
    } else if (action === "remove") {
      if (parts().length === 1) { return; }
      if (!window.confirm("Remove this part? Its text goes too (until you leave without saving).")) { return; }
      fs.remove();
    }
    state.part = Math.max(0, parts().indexOf(fs));
    renumber();
    button.focus();
    later();
    draftLater();
  });

  byId("add-part").addEventListener("click", function (event) {
    event.preventDefault();
    var fs = newPart();
    renumber();
    state.part = parts().length - 1;
    field(fs, "title").focus();
    later();
    draftLater();
  }); }

  document.querySelectorAll("#preview button[data-mode]").forEach(function (button) {
    button.addEventListener("click", function () {
      var mode = button.getAttribute("data-mode");
      if (mode === "width") {
        state.width = button.getAttribute("data-value");
        document.querySelectorAll("#preview button[data-mode=width]").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b === button));
        });
        frameBox.classList.toggle("phone", state.width === "phone");
      } else {
        state[mode] = !state[mode];
        button.setAttribute("aria-pressed", String(state[mode]));
      }
      frameBox.hidden = state.plain;
      plain.hidden = !state.plain;
      frameBox.classList.toggle("dark", state.dark);
      refresh();
    });
  });

  form.querySelectorAll("[data-count]").forEach(count);
  var firstProblem = form.querySelector("[aria-invalid=true]");
  if (firstProblem) {  // after a refused save: the first field to fix, and its part previewed
    var problemPart = firstProblem.closest("fieldset[data-part]");
    if (problemPart) { state.part = parts().indexOf(problemPart); }
    firstProblem.focus();
  }
  refresh();
})();
