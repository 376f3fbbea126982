/* 核对报告文件 on the verdict page: the chosen file is hashed here (Web Crypto SHA-256) and only
   its 64 hex digits go to the server, as the form's sha256 field; the file input has no name, so
   the file itself is never part of the request. The server answers match / mismatch /
   none_registered on the same page. Messages come from the form's data-* attributes. */
(function () {
  "use strict";
  var form = document.getElementById("document-form");
  var input = document.getElementById("document-file");
  var field = document.getElementById("document-sha256");
  var status = document.getElementById("document-status");
  if (!form || !input || !field || !status) { return; }

  function say(message) { status.textContent = message || ""; }

  function hex(buffer) {
    var bytes = new Uint8Array(buffer), out = "";
    for (var i = 0; i < bytes.length; i++) { out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
    return out;
  }

  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    if (!file) { return; }
    if (!window.crypto || !window.crypto.subtle || !file.arrayBuffer) {
      say(form.dataset.unsupported);
      return;
    }
    say(form.dataset.computing);
    input.disabled = true;
    file.arrayBuffer()
      .then(function (data) { return window.crypto.subtle.digest("SHA-256", data); })
      .then(function (digest) {
        field.value = hex(digest);
        form.submit();
      })
      .catch(function () {
        input.disabled = false;
        say(form.dataset.failed);
      });
  });
})();
