// Keyboard-first annotation: number keys choose, Enter submits, S skips with a reason,
// U undoes, ? shows the shortcuts. The task region is swapped by htmx after each submit.
(function () {
  "use strict";

  var shownAt = performance.now();

  function form() { return document.getElementById("task-form"); }

  function choose(key) {
    var f = form();
    if (!f) return false;
    if (f.querySelector("fieldset.rating")) return portal.keys.rateNext(f, key);
    var target = f.querySelector('input[data-key="' + key + '"]');
    if (!target) return false;
    target.checked = target.type === "checkbox" ? !target.checked : true;
    return true;
  }

  function submit(action) {
    var f = form();
    if (!f) return;
    f.querySelector('input[name="action"]').value = action || "submit";
    f.querySelector('input[name="seconds"]').value =
      ((performance.now() - shownAt) / 1000).toFixed(2);
    var button = f.querySelector('[data-testid="submit"]');
    if (button && button.disabled) return; // one submission per item render
    if (button) button.disabled = true;
    htmx.process(f); // a key pressed right after a swap may beat htmx's own processing
    htmx.trigger(f, "submit");
  }

  function openSkip() {
    var box = document.querySelector("[data-skip-box]");
    if (!box) return;
    box.hidden = false;
    box.querySelector("input").focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey && event.key === "Enter") { event.preventDefault(); submit(); return; }
    if (event.altKey || event.metaKey || event.ctrlKey) return;
    if (portal.keys.typing(event.target)) {
      if (event.key === "Enter" && event.target.name === "skip_reason") {
        event.preventDefault(); submit("skip");
      }
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (/^[1-9]$/.test(event.key)) { if (choose(event.key)) event.preventDefault(); return; }
    if (event.key === "Enter") { event.preventDefault(); submit(); return; }
    if (event.key === "s" || event.key === "S") { event.preventDefault(); openSkip(); return; }
    if (event.key === "u" || event.key === "U") {
      var undo = document.querySelector("[data-undo]");
      if (undo) { event.preventDefault(); htmx.trigger(undo, "click"); }
      return;
    }
    if (event.key === "?") portal.keys.toggleShortcuts();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-skip-open]")) openSkip();
    if (event.target.closest("[data-skip-confirm]")) submit("skip");
  });

  // A click on Submit also reports the time spent.
  document.addEventListener("submit", function (event) {
    var seconds = event.target.querySelector && event.target.querySelector('input[name="seconds"]');
    if (seconds && !seconds.value) {
      seconds.value = ((performance.now() - shownAt) / 1000).toFixed(2);
    }
  }, true);

  // A new task arrived: restart its clock and take focus off whatever was swapped out.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "task") {
      shownAt = performance.now();
      document.body.dataset.taskLoads = String(Number(document.body.dataset.taskLoads || 0) + 1);
      if (document.activeElement && document.activeElement !== document.body) {
        document.activeElement.blur();
      }
    }
  });
})();
