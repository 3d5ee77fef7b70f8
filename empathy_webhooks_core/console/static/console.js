// empathy-webhooks console: times in the viewer's zone, live deliveries, the login token
// from the URL's fragment. No dependency, no inline script (the page's CSP forbids it).
"use strict";

(function () {
  // <time datetime="...Z" title="... UTC">: show the viewer's local time, keep UTC on hover.
  function localise(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var node = times[i];
      var moment = new Date(node.getAttribute("datetime"));
      if (isNaN(moment.getTime())) continue;
      node.textContent = moment.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
      });
      node.classList.add("local");
    }
  }

  // The row arrives drawn (and escaped) by the server's template; it replaces the row of
  // the same delivery, or goes on top.
  function showDelivery(rows, message) {
    var update = JSON.parse(message.data);
    var holder = document.createElement("tbody");
    holder.innerHTML = update.html;
    var row = holder.querySelector("tr");
    if (!row) return;
    localise(row);
    row.classList.add("fresh");
    var old = document.getElementById("delivery-" + update.id);
    if (old) {
      old.replaceWith(row);
    } else {
      var empty = rows.querySelector(".empty-row");
      if (empty) empty.remove();
      rows.insertBefore(row, rows.firstChild);
    }
  }

  function live(main) {
    var url = main.getAttribute("data-live");
    var rows = document.getElementById("delivery-rows");
    var status = document.getElementById("live-status");
    if (!url || !rows || !window.EventSource) return;
    var source = new EventSource(url);
    var count = 0;
    source.addEventListener("delivery", function (message) {
      showDelivery(rows, message);
      count += 1;
      if (status) status.textContent = count + " update(s) since the page loaded.";
    });
    // Leaving the page closes the stream first, so no reconnection error is logged.
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // `empathy-webhooks console` prints /login#token=...: the fragment never reaches a
  // server or its logs; it fills the field and leaves the address bar.
  function tokenFromFragment() {
    var field = document.getElementById("token");
    var match = /^#token=(.+)$/.exec(window.location.hash);
    if (!field || !match) return;
    field.value = decodeURIComponent(match[1]);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
    tokenFromFragment();
    var main = document.querySelector("main[data-live]");
    if (main) live(main);
  });
})();
