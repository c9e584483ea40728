// Keyboard-first blind review: A / B / T / X decide and send, number keys rate the next
// unrated criterion, R jumps to the rationale, ? shows the shortcuts. htmx swaps #pair.
(function () {
  "use strict";

  var shownAt = performance.now();
  var KEYS = { a: "a", b: "b", t: "tie", x: "both_bad" };

  function form() { return document.getElementById("pair-form"); }

  function decide(outcome) {
    var f = form();
    if (!f || f.dataset.sent) return; // one verdict per pair render
    f.dataset.sent = "1";
    f.querySelector('input[name="outcome"]').value = outcome;
    f.querySelector('input[name="seconds"]').value =
      ((performance.now() - shownAt) / 1000).toFixed(2);
    htmx.process(f); // a key pressed right after a swap may beat htmx's own processing
    htmx.trigger(f, "submit");
  }

  function rate(key) {
    var f = form();
    return Boolean(f) && portal.keys.rateNext(f, key);
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey && event.key === "Enter" && portal.keys.typing(event.target)) {
      event.target.blur(); return;
    }
    if (event.altKey || event.metaKey || event.ctrlKey) return;
    if (portal.keys.typing(event.target)) { if (event.key === "Escape") event.target.blur(); return; }
    var key = event.key.toLowerCase();
    if (KEYS[key]) { event.preventDefault(); decide(KEYS[key]); return; }
    if (/^[1-9]$/.test(key)) { if (rate(key)) event.preventDefault(); return; }
    if (key === "r") {
      var box = document.getElementById("rationale");
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    if (key === "?") portal.keys.toggleShortcuts();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-outcome]");
    if (button) decide(button.dataset.outcome);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "pair") {
      shownAt = performance.now();
      document.body.dataset.pairLoads = String(Number(document.body.dataset.pairLoads || 0) + 1);
      if (document.activeElement && document.activeElement !== document.body) {
        document.activeElement.blur();
      }
    }
  });
})();
