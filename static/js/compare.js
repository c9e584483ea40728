// Comparison pages and the lists that lead to them: a list's compare button is enabled once
// two rows are ticked, and a settings table shows only its differing rows until "show all".
(function () {
  "use strict";

  function wirePicker(form) {
    var button = form.querySelector("[data-compare-submit]");
    if (!button) return;
    // The boxes sit in a live-refreshed table outside the form (form="..."): count them
    // through form.elements and listen on the document.
    var update = function () {
      var ticked = Array.prototype.filter.call(form.elements, function (el) {
        return el.type === "checkbox" && el.checked;
      });
      button.disabled = ticked.length < 2;
    };
    document.addEventListener("change", update);
    document.body.addEventListener("htmx:load", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-compare]").forEach(wirePicker);
    document.querySelectorAll("input[data-show-all]").forEach(function (toggle) {
      toggle.addEventListener("change", function () {
        var table = document.getElementById(toggle.dataset.showAll);
        if (table) table.classList.toggle("only-differences", !toggle.checked);
      });
    });
  });
})();
