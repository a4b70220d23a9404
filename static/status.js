// The status bar of the Copernica tab: polls the tenant's status JSON and updates the text.
// Fast (2 s) while a run is queued or running, slower (10 s) otherwise. Text only, no HTML.
(function () {
  "use strict";
  var bar = document.getElementById("status-bar");
  if (!bar) { return; }
  var url = bar.getAttribute("data-url");
  var lastState = null;

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }

  function when(iso) {
    if (!iso) { return "never"; }
    var moment = new Date(iso);
    return isNaN(moment) ? iso : moment.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function render(status) {
    var run = status.current_run;
    var state = run ? run.state : "none";
    var el = document.getElementById("run-state");
    el.setAttribute("data-state", state);
    text("run-state", run ? run.kind + " #" + run.id + ": " + run.state : "none yet");
    var progress = document.getElementById("run-progress");
    if (run && run.percent !== null) { progress.value = run.percent; progress.textContent = run.percent + "%"; }
    else { progress.removeAttribute("value"); }
    text("run-count", run ? (run.total ? run.done + " of " + run.total : run.done + " done") : "");
    text("queue-depth", String(status.queue_depth));
    text("held-jobs", String(status.held_jobs));
    text("last-success", when(status.last_success));
    var streams = (status.streams || []).map(function (s) {
      return s.channel + (s.owner ? " (held by " + s.owner + ")" : "");
    });
    text("stream-state", streams.length ? streams.join(", ") : "not connected");
    // "Salesforce failing since 10:02 UTC, retrying (attempt 4)", one per failing platform
    var problems = (status.problems || []).map(function (p) { return p.text; });
    var box = document.getElementById("problems");
    if (box) {
      if (problems.length) { box.removeAttribute("hidden"); } else { box.setAttribute("hidden", ""); }
      text("problem-text", problems.join("; "));
    }
    if (lastState !== null && lastState !== state) {
      text("status-announce", "Run " + (run ? run.id : "") + " is " + state + ".");
    }
    lastState = state;
    return state === "queued" || state === "running";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login?next=/sfcp"); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (status) {
        var busy = status ? render(status) : false;
        window.setTimeout(poll, busy ? 2000 : 10000);
      })
      .catch(function () { window.setTimeout(poll, 10000); });
  }

  var initial = document.getElementById("run-state").getAttribute("data-state");
  lastState = initial;
  window.setTimeout(poll, initial === "queued" || initial === "running" ? 1000 : 5000);
}());
