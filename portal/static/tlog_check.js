/* The verdict page's own check of the transparency log (docs/transparency.md), done in the
   browser, trusting nothing the page says about itself:
   0. the evidence (as proof=1 gives it) of the registrations the page named is fetched with the
      page's signed ticket (/verify/log: no second verification);
   1. the verifier key is read from /log/key (the key this server publishes; one obtained out of
      band and compared is stronger — see /docs/api#transparency);
   2. the checkpoint (a C2SP signed note) must carry that key's Ed25519 signature over its text
      (Web Crypto; a browser without Ed25519 is told so, never shown a tick);
   3. each entry's commitment is recomputed from USCC, number, document fingerprint and salt,
      and must name the number and registrant the page shows;
   4. each integrated entry's RFC 9162 inclusion proof must lead from its leaf hash to the
      checkpoint's root hash.
   Only then does the page say 已验证收录于透明日志 / included. Pending entries are "待收录". The
   messages come from the section's data-* attributes, in the page's language. */
(function () {
  "use strict";
  var section = document.getElementById("log-check");
  var status = document.getElementById("log-status");
  if (!section || !status) { return; }
  var texts = section.dataset;
  var encoder = new TextEncoder();

  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, function (_m, key) {
      return values[key] !== undefined ? values[key] : "";
    });
  }

  function show(state, message) {
    status.dataset.state = state;
    status.textContent = message;
  }

  function Failure(reason) { this.reason = reason; }
  function Unsupported() {}

  function fromBase64(text) {
    var raw = atob(text), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }

  function concat() {
    var total = 0, i, parts = Array.prototype.slice.call(arguments);
    for (i = 0; i < parts.length; i++) { total += parts[i].length; }
    var out = new Uint8Array(total), at = 0;
    for (i = 0; i < parts.length; i++) { out.set(parts[i], at); at += parts[i].length; }
    return out;
  }

  function sha256(bytes) {
    return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
  }

  function equal(a, b) {
    if (a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== b[i]) { return false; } }
    return true;
  }

  function hex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) { out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
    return out;
  }

  // "<name>+<8 hex key hash>+<base64(0x01 ‖ 32-byte public key)>" (Go sumdb/note)
  function parseKey(line) {
    var first = line.indexOf("+"), second = line.indexOf("+", first + 1);
    if (first < 1 || second < 0) { return null; }
    var raw = fromBase64(line.slice(second + 1));
    if (raw.length !== 33 || raw[0] !== 1) { return null; }
    return { name: line.slice(0, first), id: line.slice(first + 1, second), raw: raw, pub: raw.slice(1) };
  }

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to from a leaf
  function rootFrom(index, size, leaf, proof) {
    if (index >= size) { return Promise.reject(new Failure("index beyond the tree")); }
    var fn = index, sn = size - 1, r = Promise.resolve(leaf);
    proof.forEach(function (p) {
      r = r.then(function (hash) {
        if (sn === 0) { throw new Failure("proof too long"); }
        var step;
        if (fn % 2 === 1 || fn === sn) {
          step = sha256(concat(Uint8Array.of(1), p, hash));
          if (fn % 2 === 0) {
            while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
          }
        } else {
          step = sha256(concat(Uint8Array.of(1), hash, p));
        }
        fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
        return step;
      });
    });
    return r.then(function (hash) {
      if (sn !== 0) { throw new Failure("proof too short"); }
      return hash;
    });
  }

  function openCheckpoint(note, keys) {
    var cut = note.indexOf("\n\n");
    if (cut < 0) { throw new Failure("the checkpoint is not a signed note"); }
    var text = note.slice(0, cut + 1), lines = text.split("\n");
    var origin = lines[0], size = Number(lines[1]), root = fromBase64(lines[2] || "");
    if (!/^[0-9]+$/.test(lines[1] || "") || root.length !== 32) { throw new Failure("malformed checkpoint"); }
    var signatures = note.slice(cut + 2).split("\n").filter(function (l) { return l; });
    var checks = [];
    signatures.forEach(function (line) {
      var match = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!match) { return; }
      var sig = fromBase64(match[2]);
      keys.forEach(function (key) {
        if (key.name !== match[1] || key.name !== origin || sig.length !== 68) { return; }
        checks.push(sha256(concat(encoder.encode(key.name + "\n"), key.raw)).then(function (id) {
          if (!equal(id.slice(0, 4), sig.slice(0, 4)) || hex(id.slice(0, 4)) !== key.id) { return false; }
          return crypto.subtle.importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"])
            .catch(function () { throw new Unsupported(); })
            .then(function (imported) {
              return crypto.subtle.verify({ name: "Ed25519" }, imported, sig.slice(4), encoder.encode(text));
            });
        }));
      });
    });
    if (!checks.length) { return Promise.reject(new Failure("no signature by the published key")); }
    return Promise.all(checks).then(function (results) {
      if (results.indexOf(true) < 0) { throw new Failure("bad signature"); }
      return { size: size, root: root };
    });
  }

  function checkEntry(item, checkpoint) {
    var expected = texts.number, usccs = (texts.usccs || "").split(" ");
    if (item.number !== expected || usccs.indexOf(item.uscc) < 0) {
      return Promise.reject(new Failure("an entry of another registration"));
    }
    var committed = JSON.parse(item.entry).commitment;
    var opened = encoder.encode(item.uscc + "\n" + item.number + "\n" + (item.sha256 || "") + "\n");
    return sha256(concat(opened, fromBase64(item.salt))).then(function (digest) {
      if (hex(digest) !== committed) { throw new Failure("commitment"); }
      if (item.pending) { return "pending"; }
      if (!checkpoint || item.leaf_index >= checkpoint.size) { throw new Failure("entry beyond the checkpoint"); }
      return sha256(concat(Uint8Array.of(0), encoder.encode(item.entry)))
        .then(function (leaf) {
          return rootFrom(item.leaf_index, checkpoint.size, leaf, item.inclusion.map(fromBase64));
        })
        .then(function (root) {
          if (!equal(root, checkpoint.root)) { throw new Failure("inclusion proof"); }
          return "included";
        });
    });
  }

  function get(url, read) {
    return fetch(url, { credentials: "omit" })
      .then(function (response) {
        if (!response.ok) { throw new Error(url); }
        return read(response);
      })
      .catch(function () { throw { unavailable: true }; });
  }

  function failed(e) {
    if (e instanceof Unsupported) { show("unsupported", texts.unsupported); }
    else if (e && e.unavailable) { show("unavailable", texts.unavailable); }
    else { show("failed", fill(texts.failed, { reason: e && e.reason || "error" })); }
  }

  function run() {
    if (!window.crypto || !crypto.subtle || !window.TextEncoder || !window.fetch) {
      show("unsupported", texts.unsupported);
      return;
    }
    get(texts.evidenceUrl, function (r) { return r.json(); }).then(check).catch(failed);
  }

  function check(evidence) {
    var entries = evidence.entries || [];
    if (!entries.length) { throw new Failure("no entry"); }
    if (!evidence.checkpoint || entries.every(function (e) { return e.pending; })) {
      // nothing integrated yet: still, the pending entries must commit to what the page shows
      return Promise.all(entries.map(function (e) { return checkEntry(e, null); }))
        .then(function () { show("pending", texts.pending); });
    }
    return get(texts.keyUrl, function (r) { return r.text(); })
      .then(function (body) {
        var keys = body.split("\n").map(function (l) { return l.trim(); }).filter(Boolean).map(parseKey)
          .filter(Boolean);
        return openCheckpoint(evidence.checkpoint, keys);
      })
      .then(function (checkpoint) {
        return Promise.all(entries.map(function (e) { return checkEntry(e, checkpoint); }))
          .then(function (states) { return { checkpoint: checkpoint, states: states }; });
      })
      .then(function (done) {
        var pending = done.states.filter(function (s) { return s === "pending"; }).length;
        var message = fill(texts.included, { size: done.checkpoint.size });
        if (pending) { message += " " + fill(texts.partly, { pending: pending }); }
        show("included", message);
      });
  }

  run();
})();
