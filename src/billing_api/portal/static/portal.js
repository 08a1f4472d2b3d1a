// Progressive enhancement for the portal: copy buttons. Everything works without this file;
// it only reveals the buttons (hidden by default) and copies the text they point at.
(function () {
  "use strict";

  function textOf(id) {
    var el = document.getElementById(id);
    return el ? (el.value !== undefined && el.tagName === "INPUT" ? el.value : el.textContent) : "";
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "skip";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  function say(button, message) {
    var note = button.nextElementSibling;
    if (!note || !note.classList.contains("copied")) {
      note = document.createElement("span");
      note.className = "copied";
      note.setAttribute("role", "status");
      button.parentNode.insertBefore(note, button.nextSibling);
    }
    note.textContent = message;
  }

  function wire(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      if (button.dataset.wired) { return; }
      button.dataset.wired = "1";
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = textOf(button.dataset.copy);
        var done = function () { say(button, "Copied"); };
        var failed = function () { say(button, fallbackCopy(text) ? "Copied" : "Select the text and copy it"); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, failed);
        } else {
          failed();
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  // htmx swaps in new fragments (the explorer's result): wire their buttons too.
  document.addEventListener("htmx:afterSettle", function (event) { wire(event.target); });
})();
