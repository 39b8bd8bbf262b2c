// Times are written in UTC by the server (readable without JavaScript); here each
// <time datetime="..."> is shown in the browser's time zone, with the UTC time kept in its title.
(function () {
  "use strict";
  function show() {
    var nodes = document.querySelectorAll("time[datetime][data-local]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      var options = node.getAttribute("data-local") === "date"
        ? { year: "numeric", month: "short", day: "numeric" }
        : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
      if (!node.title) node.title = node.textContent.trim();
      node.textContent = when.toLocaleString(undefined, options);
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
})();
