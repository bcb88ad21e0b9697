// The job page's live part: follows the job's events over Server-Sent Events and adds
// each line (HTML the gateway rendered, so the page shows what a reload would) and each
// host's progress row.  Resumes after a reconnect from the last event it showed (the
// browser sends Last-Event-ID), ignores anything it already has, and keeps at most
// MAX_LINES lines in the page.  The log (a box of its own) follows new lines while the
// reader is at its bottom; scrolled up, it stays put until they scroll back down.  At the
// job's end it shows the job's state, time and hosts' tally.  No inline script: the
// page's CSP forbids it.
"use strict";
(function () {
  const MAX_LINES = 20000;
  const BOTTOM_PX = 24; // this close to the bottom counts as at the bottom
  const job = document.getElementById("job");
  const log = document.getElementById("log");
  if (!job || !log) return;
  const hint = document.getElementById("follow");

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight <= BOTTOM_PX;
  }
  function showFollowing(following) {
    log.dataset.follow = following ? "1" : "0";
    if (hint && job.dataset.state === "running") {
      hint.textContent = following
        ? "Following new lines."
        : "Not following: scroll the log to its bottom to follow new lines.";
    }
  }
  log.scrollTop = log.scrollHeight; // the newest lines first
  showFollowing(true);
  log.addEventListener("scroll", function () { showFollowing(atBottom()); });
  if (job.dataset.state !== "running") return;
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
    const follow = atBottom();
    const before = log.childElementCount;
    log.insertAdjacentHTML("beforeend", html.join(""));
    const now = Date.now();
    let el = log.lastElementChild;
    for (let i = log.childElementCount - before; i > 0 && el; i--, el = el.previousElementSibling) {
      el.dataset.shown = String(now);
    }
    const height = log.scrollHeight;
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (follow) log.scrollTop = log.scrollHeight;
    else log.scrollTop -= height - log.scrollHeight; // the lines read stay in place
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
    const end = JSON.parse(e.data);
    const badge = document.getElementById("state");
    badge.textContent = end.state;
    badge.className = "state-" + end.state;
    const took = document.getElementById("took");
    if (took && end.took) {
      delete took.dataset.running; // live.js stops counting it
      took.textContent = end.took;
      document.getElementById("took-word").textContent = "after";
      document.getElementById("outcome").textContent = end.outcome;
      document.getElementById("outcome-part").hidden = false;
    }
    job.dataset.state = end.state;
    live.textContent = "";
    if (hint) hint.textContent = "";
  });
})();
