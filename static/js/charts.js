// Every chart on a page: elements with class "echart" carry their ECharts options as JSON in
// data-chart (built by core/charts.py); this file initialises them with the vendored ECharts.
// The Content-Security-Policy allows no inline script or style attribute, so options hold no
// functions: the tooltip and the interval rows are drawn here, tooltips as DOM nodes with
// text set through textContent (series names are user text) and colours set through the
// CSSOM. A chart with data-src refreshes in place from that URL: window.portalCharts.refresh.
(function () {
  "use strict";

  var states = new Map(); // element -> {chart, payload, weight}
  // ECharts is a megabyte: fetched only by pages that have a chart, once.
  var libraryUrl = document.currentScript && document.currentScript.dataset.echarts;
  var library = null;

  function loadLibrary() {
    if (window.echarts) return Promise.resolve();
    if (!library) {
      library = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = libraryUrl;
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
      });
    }
    return library;
  }

  function fmt(v) {
    if (v === null || v === undefined || v === "-" || (typeof v === "number" && !isFinite(v))) return "n/a";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  }

  // One row per point: the interval rows as "estimate [low, high]", heatmap cells by their
  // row and column labels, everything else as "series: value".
  function describe(state, p) {
    var v = p.value;
    var options = state.payload.options;
    if (p.seriesType === "custom") return [v[4], fmt(v[1]) + " [" + fmt(v[2]) + ", " + fmt(v[3]) + "]"];
    if (p.seriesType === "heatmap") {
      return [options.yAxis.data[v[1]] + " / " + options.xAxis.data[v[0]], fmt(v[2])];
    }
    if (Array.isArray(v)) return [p.seriesName, fmt(v[1])];
    return [p.seriesName, fmt(v)];
  }

  function tooltip(state) {
    return function (params) {
      var list = Array.isArray(params) ? params : [params];
      var box = document.createElement("div");
      box.className = "echart-tip";
      if (Array.isArray(params) && list.length) {
        var head = document.createElement("div");
        head.className = "echart-tip-head";
        var axis = state.payload.options.xAxis || {};
        var at = list[0].axisValue;
        // A time axis's value is epoch milliseconds: shown as the reader's local time.
        var shown = axis.type === "time" ? new Date(at).toLocaleString() : fmt(at);
        head.textContent = (axis.name ? axis.name + " " : "") + shown;
        box.appendChild(head);
      }
      list.forEach(function (p) {
        var parts = describe(state, p);
        var row = document.createElement("div");
        row.className = "echart-tip-row";
        var swatch = document.createElement("span");
        swatch.className = "echart-swatch";
        swatch.style.backgroundColor = typeof p.color === "string" ? p.color : "#0072b2";
        var name = document.createElement("span");
        name.textContent = parts[0];
        var value = document.createElement("strong");
        value.className = "echart-tip-value";
        value.textContent = parts[1];
        row.append(swatch, name, value);
        box.appendChild(row);
      });
      return box;
    };
  }

  function renderInterval(params, api) {
    var row = api.value(0);
    var est = api.coord([api.value(1), row]);
    var low = api.coord([api.value(2), row]);
    var high = api.coord([api.value(3), row]);
    var colour = api.visual("color");
    var cap = function (x) {
      return { type: "line", shape: { x1: x, y1: est[1] - 5, x2: x, y2: est[1] + 5 }, style: { stroke: colour, lineWidth: 1.5 } };
    };
    return {
      type: "group",
      children: [
        { type: "line", shape: { x1: low[0], y1: est[1], x2: high[0], y2: est[1] }, style: { stroke: colour, lineWidth: 2 } },
        cap(low[0]),
        cap(high[0]),
        { type: "circle", shape: { cx: est[0], cy: est[1], r: 4 }, style: { fill: "#ffffff", stroke: colour, lineWidth: 2 } },
      ],
    };
  }
  var renderers = { interval: renderInterval };

  // W&B's smoothing: an exponential moving average, debiased so the first points are not
  // pulled towards zero. Gaps (null) are carried over unchanged.
  function ema(data, weight) {
    var last = 0, count = 0;
    return data.map(function (point) {
      var y = point[1];
      if (y === null || !isFinite(y)) return [point[0], null];
      last = last * weight + (1 - weight) * y;
      count += 1;
      return [point[0], last / (1 - Math.pow(weight, count))];
    });
  }

  // The options' series with colours fixed per series, plus an EMA twin of each line series
  // (same name, so the legend toggles both) while smoothing is on.
  function seriesFor(state) {
    var palette = state.payload.options.color || [];
    var base = state.payload.options.series || [];
    var smoothing = state.weight > 0;
    var out = base.map(function (s, i) {
      var copy = Object.assign({}, s);
      if (typeof copy.renderItem === "string") copy.renderItem = renderers[copy.renderItem];
      if (copy.type === "line") {
        var colour = palette[i % palette.length];
        copy.itemStyle = Object.assign({}, copy.itemStyle, { color: colour });
        copy.lineStyle = Object.assign({}, copy.lineStyle, { color: colour, opacity: smoothing ? 0.25 : 1 });
      }
      return copy;
    });
    if (smoothing) {
      base.forEach(function (s, i) {
        if (s.type !== "line") return;
        var colour = palette[i % palette.length];
        out.push({
          type: "line", id: s.id + " (EMA)", name: s.name, data: ema(s.data, state.weight),
          showSymbol: false, z: 3, itemStyle: { color: colour }, lineStyle: { color: colour, width: 2 },
        });
      });
    }
    return out;
  }

  function render(state, full) {
    var options = state.payload.options;
    if (full) {
      var initial = Object.assign({}, options, { series: seriesFor(state) });
      initial.tooltip = Object.assign({}, options.tooltip, { formatter: tooltip(state) });
      state.chart.setOption(initial, { notMerge: true });
      return;
    }
    // Only the data-bearing parts: the zoom window and hidden legend entries stay as the
    // user left them.
    state.chart.setOption(
      {
        xAxis: options.xAxis, yAxis: options.yAxis, legend: options.legend,
        graphic: options.graphic, series: seriesFor(state),
      },
      { replaceMerge: ["series"] }
    );
  }

  function smoothingControls(el, state) {
    var bar = document.createElement("div");
    bar.className = "echart-controls";
    var label = document.createElement("label");
    var toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.setAttribute("data-testid", "chart-smoothing");
    label.append(toggle, document.createTextNode(" Smooth (EMA)"));
    var weight = document.createElement("input");
    weight.type = "range"; weight.min = "0"; weight.max = "0.99"; weight.step = "0.01"; weight.value = "0.6";
    weight.disabled = true;
    weight.setAttribute("aria-label", "Smoothing weight");
    var shown = document.createElement("output");
    shown.textContent = weight.value;
    var apply = function () {
      weight.disabled = !toggle.checked;
      shown.textContent = weight.value;
      state.weight = toggle.checked ? Number(weight.value) : 0;
      render(state, false);
    };
    toggle.addEventListener("change", apply);
    weight.addEventListener("input", apply);
    bar.append(label, weight, shown);
    el.parentNode.insertBefore(bar, el);
  }

  function init(el) {
    if (states.has(el) || !window.echarts) return;
    var payload = JSON.parse(el.dataset.chart);
    el.style.height = (Number(el.dataset.height) || 320) + "px";
    var state = { chart: window.echarts.init(el, null, { renderer: "canvas" }), payload: payload, weight: 0 };
    states.set(el, state);
    if (payload.smooth) smoothingControls(el, state);
    var empty = (payload.options.graphic || [])[0];
    el.dataset.empty = empty && !empty.invisible ? "yes" : "no";
    // Ready (for people and for tests) once the first frame is drawn, not when asked to be.
    state.chart.on("finished", function ready() {
      state.chart.off("finished", ready);
      el.dataset.ready = "yes";
      el.dispatchEvent(new CustomEvent("chart:ready", { bubbles: true }));
    });
    render(state, true);
  }

  function initAll(root) {
    // Charts whose element a swap removed are disposed of, or their instances leak.
    states.forEach(function (state, el) {
      if (!el.isConnected) { state.chart.dispose(); states.delete(el); }
    });
    var found = (root || document).querySelectorAll(".echart");
    if (root && root.classList && root.classList.contains("echart")) found = [root];
    if (!found.length) return;
    loadLibrary().then(function () { found.forEach(init); });
  }

  var inflight = new Map();
  function refresh(el) {
    var state = states.get(el);
    if (!state || !el.dataset.src || inflight.get(el)) return;
    inflight.set(el, true);
    fetch(el.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (payload) { if (payload) update(el, payload); })
      .finally(function () { inflight.delete(el); });
  }

  // Fresh data fetched by the page itself (several charts from one answer): drawn in place.
  function update(el, payload) {
    var state = states.get(el);
    if (!state) return;
    state.payload = payload;
    render(state, false);
    var empty = (payload.options.graphic || [])[0];
    el.dataset.empty = empty && !empty.invisible ? "yes" : "no";
    el.dataset.updates = String(Number(el.dataset.updates || 0) + 1);
    el.dispatchEvent(new CustomEvent("chart:updated", { bubbles: true }));
  }

  window.portalCharts = {
    refresh: refresh,
    update: update,
    instance: function (el) { var s = states.get(el); return s ? s.chart : null; },
  };

  document.addEventListener("DOMContentLoaded", function () {
    initAll(document);
    document.body.addEventListener("htmx:load", function (e) { initAll(e.detail.elt); });
    window.addEventListener("resize", function () {
      states.forEach(function (state) { state.chart.resize(); });
    });
  });
})();
