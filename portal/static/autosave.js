// The statistics filing page saves its draft as you type (templates/institution/statistics_form.html):
// a change is followed, after a pause, by a background POST of the form (its CSRF token included,
// files left out) to the form's data-autosave URL, which answers {"saved": true, "at": "HH:MM"}.
// The page says "已保存 HH:MM"; the 保存草稿 button still works without JavaScript.
(function () {
  "use strict";
  var form = document.querySelector("form[data-autosave]");
  if (!form || !window.fetch || !window.FormData) { return; }
  var status = document.getElementById("autosave-status");
  var delay = 1500;
  var timer = null;
  var inFlight = false;
  var again = false;

  function say(text) { if (status) { status.textContent = text; } }

  function save() {
    timer = null;
    if (inFlight) { again = true; return; }
    inFlight = true;
    var data = new FormData(form);
    Array.prototype.forEach.call(form.querySelectorAll("input[type=file]"), function (input) { data.delete(input.name); });
    data.delete("step");
    data.delete("remove");
    fetch(form.getAttribute("data-autosave"), {
      method: "POST", body: data, credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (result) {
      if (result.ok && result.body.saved) {
        say(form.getAttribute("data-msg-saved") + " " + result.body.at);
      } else {
        say((result.body && result.body.message) || form.getAttribute("data-msg-failed"));
      }
    }).catch(function () {
      say(form.getAttribute("data-msg-failed"));
    }).then(function () {
      inFlight = false;
      if (again) { again = false; schedule(); }
    });
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(save, delay);
  }

  function edited(event) {
    if (event.target && event.target.type === "file") { return; }
    schedule();
  }

  form.addEventListener("input", edited);
  form.addEventListener("change", edited);
  form.addEventListener("submit", function () { if (timer) { clearTimeout(timer); timer = null; } });
})();
