// The adjudication form: "Take A" / "Take B" send that answer as it stands, "Write my own"
// opens the answer fields, which "Start from A" fills with A's answer (recorded in `draft`
// so the confirmation can show what changed). Ctrl+Enter sets the gold label.
(function () {
  "use strict";

  function form() { return document.querySelector("form[data-adjudication]"); }

  // The own-answer fields show only while "Write my own" is chosen.
  function sync() {
    var f = form();
    if (!f) return;
    var own = f.querySelector("[data-own]");
    var chosen = f.querySelector('input[name="take"]:checked');
    if (own) own.hidden = !(chosen && chosen.value === "own");
  }

  function fill(f, button) {
    var values = JSON.parse(button.dataset.fill || "{}");
    var own = f.querySelector("[data-own]");
    own.querySelectorAll("input, textarea").forEach(function (input) {
      var wanted = values[input.name] || [];
      if (input.type === "radio" || input.type === "checkbox") {
        input.checked = wanted.indexOf(input.value) !== -1;
      } else {
        // Steps share one name: the n-th box takes the n-th value.
        var group = own.querySelectorAll('[name="' + input.name + '"]');
        input.value = wanted[Array.prototype.indexOf.call(group, input)] || "";
      }
    });
    f.querySelector('input[name="draft"]').value = button.dataset.startFrom;
  }

  document.addEventListener("change", function (event) {
    if (event.target.name === "take") sync();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-start-from]");
    var f = form();
    if (button && f) { event.preventDefault(); fill(f, button); }
  });

  document.addEventListener("keydown", function (event) {
    if (!(event.ctrlKey && event.key === "Enter")) return;
    var f = form();
    if (!f) return;
    event.preventDefault();
    f.requestSubmit(); // runs the browser's checks (a choice, a reason), then htmx's post
  });

  document.addEventListener("DOMContentLoaded", sync);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "panel") {
      sync();
      document.body.dataset.panelLoads = String(Number(document.body.dataset.panelLoads || 0) + 1);
    }
  });
})();
