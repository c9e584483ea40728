// The portal's one live connection: a websocket per tab that carries job progress,
// queue counts and notifications. Pages listen for "portal:event" on document.body.
(function () {
  "use strict";

  function toast(text) {
    var region = document.getElementById("live-toasts");
    if (!region) return;
    var el = document.createElement("div");
    el.className = "toast";
    el.textContent = text; // never innerHTML: event text may carry user input
    region.appendChild(el);
    setTimeout(function () { el.remove(); }, 8000);
  }

  var socket = null;
  var wanted = new Set();
  var retry = 500;

  function connect() {
    var path = document.body.dataset.wsUrl;
    if (!path) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + path);
    socket.addEventListener("open", function () {
      retry = 500;
      document.body.dataset.wsStatus = "open";
      wanted.forEach(function (id) { socket.send(JSON.stringify({ subscribe: id })); });
    });
    socket.addEventListener("message", function (message) {
      var event = JSON.parse(message.data);
      if (event.type === "notification") {
        toast(event.text);
        document.body.dispatchEvent(new CustomEvent("portal:refresh"));
      }
      document.body.dispatchEvent(new CustomEvent("portal:event", { detail: event }));
    });
    socket.addEventListener("close", function (closed) {
      document.body.dataset.wsStatus = "closed";
      if (closed.code === 4401) return; // signed out: do not hammer the server
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    });
  }

  window.portal = {
    toast: toast,
    subscribe: function (projectId) {
      wanted.add(projectId);
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ subscribe: projectId }));
      }
    },
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-subscribe-project]").forEach(function (el) {
      window.portal.subscribe(Number(el.dataset.subscribeProject));
    });
    connect();
  });
})();
