// The job page's live part: follows the job's events over Server-Sent Events and adds
// each line (HTML the gateway rendered, so the page shows what a reload would) and each
// host's progress row.  Resumes after a reconnect from the last event it showed (the
// browser sends Last-Event-ID), ignores anything it already has, and keeps at most
// MAX_LINES lines in the page.  No inline script: the page's CSP forbids it.
"use strict";
(function () {
  const MAX_LINES = 20000;
  const job = document.getElementById("job");
  const log = document.getElementById("log");
  if (!job || !log || job.dataset.state !== "running") return;
  let last = Number(job.dataset.after) || 0;
  let queue = [];
  let scheduled = false;
  const live = document.getElementById("live");

  function flush() {
    scheduled = false;
    if (!queue.length) return;
    const batch = queue;
    queue = [];
    const html = [];
    const hosts = new Map();
    for (const m of batch) {
      html.push(m.line);
      if (m.host_row) hosts.set(m.host, m.host_row);
    }
    const before = log.childElementCount;
    log.insertAdjacentHTML("beforeend", html.join(""));
    const now = Date.now();
    let el = log.lastElementChild;
    for (let i = log.childElementCount - before; i > 0 && el; i--, el = el.previousElementSibling) {
      el.dataset.shown = String(now);
    }
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    for (const [host, row] of hosts) {
      const old = document.getElementById("host-" + host);
      if (old) old.outerHTML = row;
      else document.querySelector("#hosts tbody").insertAdjacentHTML("beforeend", row);
    }
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(flush);
    setTimeout(flush, 100); // rAF does not run in a hidden tab
  }

  const source = new EventSource("/ui/jobs/" + encodeURIComponent(job.dataset.id) + "/events?after=" + last);
  source.addEventListener("open", function () { live.textContent = "live"; });
  source.addEventListener("error", function () { live.textContent = "reconnecting..."; });
  source.addEventListener("event", function (e) {
    const seq = Number(e.lastEventId);
    if (!(seq > last)) return; // already shown
    last = seq;
    queue.push(JSON.parse(e.data));
    schedule();
  });
  source.addEventListener("end", function (e) {
    source.close();
    flush();
    const state = JSON.parse(e.data).state;
    const badge = document.getElementById("state");
    badge.textContent = state;
    badge.className = "state-" + state;
    job.dataset.state = state;
    live.textContent = "";
  });
})();
