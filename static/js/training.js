// Training pages: fill the job form from a preset, and keep a job page live from the
// websocket (portal.js dispatches "portal:event"): the status region is re-fetched through
// htmx at most a few times a second, and each time it is the loss chart fetches its data and
// updates in place (charts.js); log lines are appended as they arrive.
(function () {
  "use strict";

  function setField(form, name, value) {
    var el = form.elements.namedItem(name);
    if (!el) return;
    if (el.type === "checkbox") el.checked = !!value;
    else el.value = Array.isArray(value) ? value.join(", ") : value;
  }

  function wirePresets(form) {
    var data = JSON.parse(form.dataset.presets || "{}");
    var select = form.elements.namedItem("preset");
    if (!select || !data.presets) return;
    select.addEventListener("change", function () {
      var preset = data.presets[select.value];
      if (!preset) return;
      Object.keys(data.defaults).forEach(function (name) { setField(form, name, data.defaults[name]); });
      setField(form, "kind", preset.kind);
      setField(form, "method", preset.method);
      Object.keys(preset.values).forEach(function (name) { setField(form, name, preset.values[name]); });
    });
  }

  var pending = null;
  var lastRefresh = 0;
  var MIN_GAP_MS = 400;

  function refreshLive() {
    var live = document.getElementById("job-live");
    if (!live || !window.htmx) return;
    var wait = Math.max(0, lastRefresh + MIN_GAP_MS - Date.now());
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      lastRefresh = Date.now();
      var current = document.getElementById("job-live");
      if (current) window.htmx.trigger(current, "training-refresh");
    }, wait);
  }

  function appendLog(event) {
    var log = document.getElementById("job-log");
    if (!log) return;
    var li = document.createElement("li");
    li.className = "log-" + (event.level || "info");
    var stamp = document.createElement("span");
    stamp.className = "muted";
    stamp.textContent = new Date().toTimeString().slice(0, 8) + " ";
    li.appendChild(stamp);
    li.appendChild(document.createTextNode(event.message || "")); // never innerHTML
    log.appendChild(li);
    while (log.children.length > 500) log.removeChild(log.firstChild);
  }

  function refreshChart() {
    var holder = document.getElementById("job-chart");
    var chart = holder && holder.querySelector(".echart");
    if (chart && window.portalCharts) window.portalCharts.refresh(chart);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("job-form");
    if (form) wirePresets(form);
    document.body.addEventListener("htmx:load", function (e) {
      if (e.detail.elt && e.detail.elt.id === "job-live") refreshChart();
    });

    document.body.addEventListener("portal:event", function (e) {
      var event = e.detail || {};
      if (typeof event.type !== "string" || event.type.indexOf("training.") !== 0) return;
      var jobs = document.getElementById("jobs");
      if (jobs && window.htmx && event.type !== "training.metric" && event.type !== "training.log") {
        window.htmx.trigger(jobs, "training-jobs-refresh");
      }
      var live = document.getElementById("job-live");
      if (!live || Number(live.dataset.job) !== Number(event.job)) return;
      if (event.type === "training.log") appendLog(event);
      else refreshLive();
    });
  });
})();
