/* Complaint attachments from a phone: a chosen file is checked here before anything is sent (type by
   content type and name, size against data-max-bytes), a wrong one is named and taken out of the
   form, and a large photo can be compressed on the device (canvas → JPEG, nothing leaves it).
   Progressive enhancement: the server checks everything again (portal/complaints.py). Messages
   come from the input's data-msg-* attributes, in the page's language. */
(function () {
  "use strict";
  var ACCEPTED = { "image/jpeg": true, "image/png": true, "application/pdf": true };
  var EXTENSIONS = { jpg: true, jpeg: true, png: true, pdf: true };
  var OFFER_BYTES = 2 * 1024 * 1024;   // photos above this are offered compression
  var LONG_SIDE = 2400;                // px; enough to read a printed report

  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, function (_m, key) {
      return values[key] !== undefined ? values[key] : "";
    });
  }

  function size(bytes) {
    if (bytes >= 1024 * 1024) { return (bytes / 1024 / 1024).toFixed(1) + " MB"; }
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function suffix(name) {
    var dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
  }

  function canReplaceFiles() {
    try { return typeof DataTransfer === "function" && !!new DataTransfer().items; } catch (e) { return false; }
  }

  function setup(input) {
    var max = parseInt(input.getAttribute("data-max-bytes"), 10) || 5 * 1024 * 1024;
    var kinds = {};
    try { kinds = JSON.parse(input.getAttribute("data-kinds") || "{}"); } catch (e) { kinds = {}; }
    var msg = function (key) { return input.getAttribute("data-msg-" + key) || ""; };
    var sep = input.getAttribute("data-msg-sep") || "";   // "" after a Chinese full stop, " " in English

    var box = document.createElement("div");
    box.className = "attachment-check";
    box.id = input.id + "-check";
    box.setAttribute("aria-live", "polite");
    input.parentNode.insertBefore(box, input.nextSibling);
    var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (described.indexOf(box.id) === -1) { described.push(box.id); }
    input.setAttribute("aria-describedby", described.join(" "));

    function show(text, kind, button) {
      box.textContent = "";
      box.className = "attachment-check" + (kind ? " attachment-" + kind : "");
      if (!text) { return; }
      var p = document.createElement("p");
      p.textContent = text;
      if (kind === "error") { p.setAttribute("role", "alert"); }
      box.appendChild(p);
      if (button) { box.appendChild(button); }
    }

    function refuse(text) {
      input.value = "";                      // never sent: the person chooses again
      input.setAttribute("aria-invalid", "true");
      show(text, "error");
    }

    function compressButton(file, mustCompress) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button small";
      button.textContent = msg("compress");
      button.addEventListener("click", function () {
        button.disabled = true;
        button.textContent = msg("compressing");
        compress(file, max).then(function (blob) {
          var name = file.name.replace(/\.[^.]*$/, "") + ".jpg";
          var out = new File([blob], name, { type: "image/jpeg", lastModified: Date.now() });
          var transfer = new DataTransfer();
          transfer.items.add(out);
          input.files = transfer.files;
          input.removeAttribute("aria-invalid");
          show(fill(msg("compressed"), { name: name, size: size(out.size) }), "ok");
        }, function () {
          if (mustCompress) { refuse(msg("failed")); } else { show(msg("failed"), "error"); }
        });
      });
      return button;
    }

    input.addEventListener("change", function () {
      input.removeAttribute("aria-invalid");
      var file = input.files && input.files[0];
      if (!file) { show(""); return; }
      var ext = suffix(file.name);
      var typeOk = ACCEPTED[file.type] || (!file.type && EXTENSIONS[ext]);
      if (!typeOk) {
        var what = kinds[ext] ? fill(msg("kind"), { name: file.name, kind: kinds[ext], suffix: "." + ext })
                              : fill(msg("unknown"), { name: file.name });
        refuse(what + sep + msg("rule"));
        return;
      }
      var isPhoto = file.type === "image/jpeg" || file.type === "image/png" || ext === "jpg" || ext === "jpeg" || ext === "png";
      var compressible = isPhoto && canReplaceFiles() && !!document.createElement("canvas").toBlob;
      if (file.size > max) {
        var text = fill(msg("size"), { name: file.name, size: size(file.size) });
        if (compressible) {
          input.setAttribute("aria-invalid", "true");
          show(text + sep + msg("must"), "error", compressButton(file, true));
          // until it is compressed the too-large file must not be sent
          input.setAttribute("data-too-big", "1");
        } else {
          refuse(text + sep + msg("size-pdf"));
        }
        return;
      }
      input.removeAttribute("data-too-big");
      if (compressible && file.size > OFFER_BYTES) {
        show(fill(msg("offer"), { size: size(file.size) }), "offer", compressButton(file, false));
        return;
      }
      show(fill(msg("ok"), { name: file.name, size: size(file.size) }), "ok");
    });

    if (input.form) {
      input.form.addEventListener("submit", function (event) {
        var file = input.files && input.files[0];
        if (file && file.size > max) {
          event.preventDefault();
          input.setAttribute("aria-invalid", "true");
          input.focus();
        }
      });
    }
  }

  // createImageBitmap reads the file without a URL (CSP img-src has no blob:); else a data: URL
  function loadImage(file) {
    if (typeof createImageBitmap === "function") {
      return createImageBitmap(file).then(function (bitmap) {
        return { source: bitmap, width: bitmap.width, height: bitmap.height };
      });
    }
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () {
        var img = new Image();
        img.onload = function () { resolve({ source: img, width: img.naturalWidth, height: img.naturalHeight }); };
        img.onerror = function () { reject(new Error("unreadable image")); };
        img.src = reader.result;
      };
      reader.onerror = function () { reject(new Error("unreadable file")); };
      reader.readAsDataURL(file);
    });
  }

  function encode(canvas, quality) {
    return new Promise(function (resolve, reject) {
      canvas.toBlob(function (blob) { if (blob) { resolve(blob); } else { reject(new Error("encode failed")); } },
                    "image/jpeg", quality);
    });
  }

  function compress(file, max) {
    return loadImage(file).then(function (img) {
      var side = LONG_SIDE;
      function attempt(quality) {
        var scale = Math.min(1, side / Math.max(img.width, img.height));
        var canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(img.width * scale));
        canvas.height = Math.max(1, Math.round(img.height * scale));
        var ctx = canvas.getContext("2d");
        ctx.fillStyle = "#fff";                 // a transparent PNG becomes white, not black
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.drawImage(img.source, 0, 0, canvas.width, canvas.height);
        return encode(canvas, quality).then(function (blob) {
          if (blob.size <= max && blob.size <= Math.max(file.size * 0.9, 1)) { return blob; }
          if (quality > 0.5) { return attempt(quality - 0.15); }
          if (side > 1000) { side = Math.round(side * 0.7); return attempt(0.8); }
          if (blob.size <= max) { return blob; }
          throw new Error("still too large");
        });
      }
      return attempt(0.85);
    });
  }

  var inputs = document.querySelectorAll("input[type=file][data-max-bytes]");
  for (var i = 0; i < inputs.length; i++) { setup(inputs[i]); }
}());
