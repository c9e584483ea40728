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
      var reopened = document.body.dataset.wsStatus === "closed";
      document.body.dataset.wsStatus = "open";
      wanted.forEach(function (id) { socket.send(JSON.stringify({ subscribe: id })); });
      // Events sent while the socket was down (a server or Redis restart) are gone:
      // live regions fetch their state again.
      if (reopened) document.body.dispatchEvent(new CustomEvent("portal:refresh"));
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

  // Shared by the keyboard-first screens (annotate.js, review.js).
  var keys = {
    // Keys typed into a text box are text, not shortcuts.
    typing: function (target) {
      return Boolean(target) && (target.tagName === "TEXTAREA" ||
        (target.tagName === "INPUT" && /^(text|number|search|email)$/.test(target.type)));
    },
    // A number key scores the first criterion (fieldset.rating) that has no score yet.
    rateNext: function (form, key) {
      var groups = form.querySelectorAll("fieldset.rating");
      for (var i = 0; i < groups.length; i++) {
        if (!groups[i].querySelector("input:checked")) {
          var input = groups[i].querySelector('input[data-key="' + key + '"]');
          if (input) { input.checked = true; return true; }
          return false;
        }
      }
      return false;
    },
    toggleShortcuts: function () {
      var panel = document.getElementById("shortcuts");
      if (panel) panel.hidden = !panel.hidden;
    },
  };

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-shortcuts-toggle]")) keys.toggleShortcuts();
  });

  window.portal = {
    keys: keys,
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
