// Every page's live part (no inline script: the page's CSP forbids it; every page works
// without this file).  (1) Running times go on: an element `.took[data-running]` holds
// the milliseconds a job had run when the page was made; its text is rewritten each
// second in the words of the gateway's `view::duration`.  (2) On a page that names its
// live parts (`#live-parts`: `data-parts`, the ids of the parts; `data-src`, the page to
// fetch them from, else this one; `data-version`, the jobs' version the page was made
// from), a `change` from /ui/changes (a job started or ended) fetches the page again and
// swaps those parts, as a reload would show them.
"use strict";
(function () {
  function duration(ms) {
    const s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
    const m = Math.floor(s / 60) % 60, r = s % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + r + "s";
    return r + "s";
  }

  const loaded = Date.now();
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll(".took[data-running]")) {
      const since = Number(el.dataset.at || loaded);
      el.textContent = duration(Number(el.dataset.running) + now - since);
    }
  }
  setInterval(tick, 1000);

  const marker = document.getElementById("live-parts");
  if (!marker || !window.EventSource || !window.fetch) return;
  const parts = marker.dataset.parts.split(" ");
  const src = marker.dataset.src || location.pathname + location.search;
  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(src, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) return; // signed out, or the gateway is away: the page stays as it is
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const at = String(Date.now());
      for (const id of parts) {
        const fresh = doc.getElementById(id);
        const old = document.getElementById(id);
        if (!fresh || !old) continue;
        for (const t of fresh.querySelectorAll(".took[data-running]")) t.dataset.at = at;
        old.replaceWith(document.adoptNode(fresh));
      }
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  const changes = new EventSource("/ui/changes?since=" + encodeURIComponent(marker.dataset.version));
  changes.addEventListener("open", function () { document.body.dataset.changes = "open"; });
  changes.addEventListener("error", function () { document.body.dataset.changes = "reconnecting"; });
  changes.addEventListener("change", refresh);
})();
