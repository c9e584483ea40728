// Dataset upload with a real progress bar: the file goes up through XMLHttpRequest so the
// browser reports bytes sent; then the import page shows the worker's progress.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-upload-form]");
    if (!form || !window.FormData) return;
    event.preventDefault();
    var box = form.querySelector("[data-upload-progress]");
    var bar = box.querySelector("progress");
    var label = box.querySelector("[data-upload-percent]");
    form.querySelectorAll(".upload-error").forEach(function (el) { el.remove(); });
    box.hidden = false;

    var request = new XMLHttpRequest();
    request.open("POST", form.action || location.href);
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    request.upload.addEventListener("progress", function (progress) {
      if (!progress.lengthComputable) return;
      var percent = Math.round((100 * progress.loaded) / progress.total);
      bar.value = percent;
      label.textContent = percent + "%";
    });
    request.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(request.responseText); } catch (e) { body = {}; }
      if (request.status === 202 && body.upload) {
        bar.value = 100;
        location.assign(location.pathname.replace(/datasets\/$/, "uploads/" + body.upload + "/"));
        return;
      }
      box.hidden = true;
      var errors = body.errors || { file: [{ message: "The upload failed (" + request.status + ")." }] };
      Object.keys(errors).forEach(function (field) {
        var p = document.createElement("p");
        p.className = "error upload-error";
        p.setAttribute("role", "alert");
        p.dataset.testid = "upload-form-error";
        p.textContent = errors[field].map(function (e) { return e.message || e; }).join(" ");
        form.insertBefore(p, form.firstChild.nextSibling);
      });
    });
    request.send(new FormData(form));
  });
})();
