// The deployment page: its charts are live. Every few seconds (data-interval) the page asks
// data-src for every chart's fresh options in one answer and charts.js draws them in place,
// keeping the reader's zoom and hidden legend entries. A hidden tab asks nothing.
(function () {
  "use strict";

  function poll(box) {
    var every = Number(box.dataset.interval) || 3000;
    var busy = false;
    function tick() {
      if (busy || document.hidden || !window.portalCharts) return;
      busy = true;
      fetch(box.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data || !data.charts) return;
          Object.keys(data.charts).forEach(function (key) {
            var slot = box.querySelector('[data-chart-key="' + key + '"] .echart');
            if (slot) window.portalCharts.update(slot, data.charts[key]);
          });
          box.dataset.updates = String(Number(box.dataset.updates || 0) + 1);
          box.dispatchEvent(new CustomEvent("serving:charts-updated", { bubbles: true }));
        })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { busy = false; });
    }
    setInterval(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("deployment-charts");
    if (box && box.dataset.src) poll(box);
  });
})();
