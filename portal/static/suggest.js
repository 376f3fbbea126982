/* Institution suggestions for the search and complaint forms. Progressive enhancement: the
   forms work without it; with it, a native <datalist> offers names, former names and USCCs. */
(function () {
  "use strict";
  var input = document.getElementById("institution");
  if (!input || !input.dataset.suggestUrl || !window.fetch) { return; }
  var list = document.createElement("datalist");
  list.id = "institution-suggestions";
  input.parentNode.insertBefore(list, input.nextSibling);
  input.setAttribute("list", list.id);
  var timer = null, last = "", pending = null;

  function contains(text, query) {
    return text.toUpperCase().indexOf(query) !== -1;
  }

  function show(query, suggestions) {
    list.textContent = "";
    var q = query.toUpperCase();
    suggestions.forEach(function (s) {
      var formers = s.former_names || [];
      var byName = contains(s.name, q) || formers.some(function (n) { return contains(n, q); });
      var option = document.createElement("option");
      // a name (current or former) fills in the current name; a USCC or certificate the USCC
      option.value = byName ? s.name : s.uscc;
      option.label = [byName ? s.uscc : s.name].concat(formers).join(" · ");
      list.appendChild(option);
    });
  }

  function load() {
    var query = input.value.trim();
    if (query.length < 2 || query === last) { return; }
    last = query;
    if (pending && pending.abort) { pending.abort(); }
    pending = window.AbortController ? new AbortController() : null;
    fetch(input.dataset.suggestUrl + "?q=" + encodeURIComponent(query), {
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
      signal: pending ? pending.signal : undefined
    }).then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
      .then(function (data) { if (input.value.trim() === query) { show(query, data.suggestions || []); } })
      .catch(function () { /* suggestions are a convenience; the form still works */ });
  }

  input.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(load, 200);
  });
}());
