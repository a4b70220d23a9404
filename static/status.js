// The status bar of the tab and the dashboard: polls the tenant's status JSON and shows the
// sentences the server wrote (status.lines), so the page and the first render say the same.
// Every second while a run is queued or running (its count moves), every 2 s while waiting
// changes or a failing platform are shown, every 5 s otherwise: trouble shows within seconds.
// Text only, no HTML.
(function () {
  "use strict";
  var bar = document.getElementById("status-bar");
  if (!bar) { return; }
  var url = bar.getAttribute("data-url");
  var runState = document.getElementById("run-state");
  var lastState = runState.getAttribute("data-state");
  var lastTrouble = document.getElementById("problem-text").textContent;

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
    runState.setAttribute("data-state", state);
    runState.setAttribute("data-done", run ? String(run.done) : "");
    runState.setAttribute("data-total", run && run.total !== null ? String(run.total) : "");
    text("run-state", status.lines.run);
    var progress = document.getElementById("run-progress");
    if (run && run.percent !== null) { progress.value = run.percent; progress.textContent = run.percent + "%"; }
    else { progress.removeAttribute("value"); progress.textContent = ""; }
    text("realtime-state", status.lines.realtime);
    text("waiting-changes", status.lines.waiting);
    document.getElementById("waiting-changes").setAttribute("data-waiting", String(status.waiting));
    text("open-errors", status.lines.errors);
    text("last-success", when(status.last_success));
    // "Salesforce failing since 10:02 UTC, retrying (attempt 4)", one per failing platform
    var trouble = (status.problems || []).map(function (p) { return p.text; }).join("; ");
    var box = document.getElementById("problems");
    if (trouble) { box.removeAttribute("hidden"); } else { box.setAttribute("hidden", ""); }
    text("problem-text", trouble);
    if (trouble && trouble !== lastTrouble) {
      text("status-announce", trouble);
    } else if (lastState !== state) {
      text("status-announce", status.lines.run);
    }
    lastState = state;
    lastTrouble = trouble;
    if (state === "queued" || state === "running") { return 1000; }
    return trouble !== "" || status.waiting > 0 ? 2000 : 5000;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname)); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (status) {
        window.setTimeout(poll, status ? render(status) : 5000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  window.setTimeout(poll, lastState === "queued" || lastState === "running" ? 1000 : 2000);
}());
