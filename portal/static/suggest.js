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

  function show(query, suggestions) {
    list.textContent = "";
    var q = query.toUpperCase();
    suggestions.forEach(function (s) {
      var option = document.createElement("option");
      var byName = s.name.toUpperCase().indexOf(q) !== -1;
      option.value = byName ? s.name : s.uscc;
      var extra = [byName ? s.uscc : s.name].concat(s.former_names || []);
      option.label = extra.join(" · ");
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
