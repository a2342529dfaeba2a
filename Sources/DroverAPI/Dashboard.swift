/// The dashboard a manager serves at `/` with `--api`: one page, no build step and nothing from
/// the network — plain DOM code: executors and counts pushed by the API's event stream
/// (`/v1/events`, read once a second while it is down), jobs and the leader read once a second,
/// and the selected job's latest run's output followed as it is written (`…/log?follow=true`).
enum Dashboard {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Drover</title>
        <style>
          body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
          header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 24px; align-items: baseline; }
          header h1 { font-size: 18px; margin: 0; }
          main { padding: 16px 20px; display: grid; grid-template-columns: minmax(280px, 1fr) 2fr; gap: 20px; }
          section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
          h2 { font-size: 15px; margin: 0 0 10px; }
          .executor { display: grid; grid-template-columns: 70px 1fr 70px; gap: 8px; align-items: center; margin: 6px 0; }
          .bar { height: 14px; background: #e4e7ec; border-radius: 7px; overflow: hidden; }
          .bar > div { height: 100%; background: #3d7be0; transition: width .4s; }
          .executor[data-state=dead] { color: #a33; } .executor[data-state=dead] .bar > div { background: #c9cdd4; }
          .executor[data-state=draining] .bar > div { background: #d99a2b; }
          .bar > div.claimed { background: #8a5cd6; float: left; } .bar > div.placed { float: left; }
          .executor .direct { grid-column: 2 / 4; font-size: 12px; color: #6b7280; margin-top: -4px; }
          table { border-collapse: collapse; width: 100%; }
          th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #eceef2; white-space: nowrap; }
          td.state { font-weight: 600; }
          tr[data-state=succeeded] td.state { color: #1f8a4c; } tr[data-state=failed] td.state { color: #c23b3b; }
          tr[data-state=running] td.state { color: #3d7be0; } tr[data-state=waiting] td.state, tr[data-state=queued] td.state { color: #9a6a00; }
          .filters button { margin: 0 4px 8px 0; border: 1px solid #cfd4dc; background: #fff; border-radius: 4px; padding: 2px 8px; cursor: pointer; }
          .filters button.on { background: #1d2330; color: #fff; }
          #error { color: #c23b3b; } pre { background: #f5f6f8; padding: 8px; overflow: auto; max-height: 320px; }
          tbody tr { cursor: pointer; }
          #steps { display: flex; gap: 18px; overflow-x: auto; margin: 6px 0 10px; padding-bottom: 4px; }
          #steps .column { display: flex; flex-direction: column; gap: 6px; justify-content: center; }
          #steps .step { border: 1px solid #cfd4dc; border-left-width: 4px; border-radius: 5px; padding: 3px 8px; min-width: 110px; display: flex; flex-direction: column; font-size: 12px; background: #fff; }
          #steps .step small { color: #6b7280; }
          #steps .step[data-state=succeeded] { border-color: #1f8a4c; background: #eef8f2; } #steps .step[data-state=failed] { border-color: #c23b3b; background: #fcefef; }
          #steps .step[data-state=running] { border-color: #3d7be0; background: #eef3fd; } #steps .step[data-state=skipped], #steps .step[data-state=stopped] { color: #8a9099; border-style: dashed; }
          #log .lines { font: 12px/1.35 ui-monospace, monospace; background: #1d2330; color: #e4e7ec; padding: 8px; max-height: 320px; overflow: auto; white-space: pre; }
        </style>
        </head>
        <body>
        <header><h1>Drover</h1><span id="leader">…</span><span id="summary"></span><span id="counts"></span><span id="error"></span></header>
        <main>
          <section><h2>Executors</h2><div id="executors"></div></section>
          <section>
            <h2>Jobs</h2>
            <div class="filters" id="filters"></div>
            <table><thead><tr><th>job</th><th>name</th><th>method</th><th>state</th><th>runs</th><th>submitted</th></tr></thead>
            <tbody id="jobs"></tbody></table>
            <div id="job"></div>
            <div id="log"></div>
          </section>
        </main>
        <script>
        "use strict";
        const states = ["all", "queued", "waiting", "running", "succeeded", "failed", "stopped", "cancelled"];
        let filter = "all", selected = null;
        const el = (tag, attrs = {}, ...children) => {
          const node = document.createElement(tag);
          for (const [key, value] of Object.entries(attrs)) key.startsWith("data-") || key === "class" ? node.setAttribute(key, value) : node[key] = value;
          for (const child of children) node.append(child);
          return node;
        };
        const get = async path => {
          const response = await fetch(path, { credentials: "same-origin" });
          const body = await response.json();
          if (!response.ok) throw Object.assign(new Error(body.message || response.status), { status: response.status });
          return body;
        };
        const ago = ms => { const s = Math.max(0, Math.round((Date.now() - ms) / 1000)); return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago"; };
        function renderFilters() {
          document.getElementById("filters").replaceChildren(...states.map(state =>
            el("button", { class: state === filter ? "on" : "", textContent: state, onclick: () => { filter = state; renderFilters(); tick(); } })));
        }
        function renderExecutors(executors) {
          let used = 0, total = 0, alive = 0;
          document.getElementById("executors").replaceChildren(...executors.map(executor => {
            const capacity = executor.registration ? executor.registration.capacity.slots : 0;
            const held = (executor.state ? executor.state.tasks : []).filter(task => task.state !== "succeeded" && task.state !== "failed")
              .reduce((sum, task) => sum + (task.resources ? task.resources.slots : 1), 0);
            const state = !executor.alive ? "dead" : executor.state && executor.state.draining ? "draining" : "alive";
            if (executor.alive) { used += held; total += capacity; alive += 1; }
            // The direct path: tasks it claimed (their part of the bar) and reservations waiting in its inbox.
            const claimed = executor.claimed || 0, reserved = executor.load ? executor.load.reserved : 0;
            const claimedSlots = executor.claimedSlots || 0;
            const part = n => capacity ? Math.min(100, 100 * n / capacity) : 0;
            const claimedWidth = Math.min(part(claimedSlots), part(held)), placedWidth = part(held) - claimedWidth;
            return el("div", { class: "executor", "data-executor": executor.id, "data-state": state, "data-claimed": claimed, "data-reserved": reserved, title: state },
              el("span", { textContent: executor.id }),
              el("div", { class: "bar" }, el("div", { class: "claimed", style: "width:" + claimedWidth + "%" }), el("div", { class: "placed", style: "width:" + placedWidth + "%" })),
              el("span", { textContent: executor.alive ? held + "/" + capacity : state }),
              ...(executor.alive && (claimed || reserved) ? [el("span", { class: "direct", textContent: claimed + " claimed · " + reserved + " reserved (direct path)" })] : []));
          }));
          document.getElementById("summary").textContent = alive + " executors alive, " + used + "/" + total + " slots used";
        }
        function renderJobs(page) {
          document.getElementById("jobs").replaceChildren(...page.jobs.map(job =>
            el("tr", { "data-job": job.id, "data-state": job.state, onclick: () => { selected = job.id; tick(); } },
              el("td", { textContent: job.id }), el("td", { textContent: job.spec.name || "" }), el("td", { textContent: job.spec.method }),
              el("td", { class: "state", textContent: job.state }), el("td", { textContent: job.runsEnded + "/" + job.runsStarted }),
              el("td", { textContent: ago(job.submittedAt) }))));
        }
        async function renderJob() {
          if (!selected) return;
          let job;
          try { job = await get("/v1/jobs/" + encodeURIComponent(selected)); } catch (error) {
            // A job that is gone is let go; anything else (a slow or failed read) is tried again next second.
            document.getElementById("job").dataset.error = error.message;
            if (error.status === 404) { selected = null; document.getElementById("job").replaceChildren(); }
            return;
          }
          document.getElementById("job").replaceChildren(el("h2", { textContent: "Job " + job.id + " — " + job.state }),
            ...(job.spec.steps ? [renderSteps(job)] : []),
            el("pre", { textContent: JSON.stringify({ spec: job.spec, runs: job.history, nextRunAt: job.nextRunAt, waiting: job.waitingReason }, null, 2) }));
          showLog(job);
        }
        // A workflow's steps as a graph: a column per depth (a step stands right of every step it
        // runs after), each step with its state, its run and where it runs. Dependencies as the
        // leader reads them: `after`, else the step before in the list that is no compensation step.
        function renderSteps(job) {
          const steps = job.spec.steps, progress = job.steps || [];
          const index = new Map(steps.map((step, i) => [step.id, i]));
          const compensations = new Set(steps.flatMap(step => step.onFailure && step.onFailure.compensate ? [step.onFailure.compensate] : []));
          let previous = null;
          const after = steps.map((step, i) => {
            if (compensations.has(step.id)) return [];
            const found = step.after ? step.after.map(id => index.get(id)).filter(d => d !== undefined) : previous === null ? [] : [previous];
            previous = i;
            return found;
          });
          const depth = [];
          const depthOf = i => depth[i] !== undefined ? depth[i] : (depth[i] = after[i].length ? 1 + Math.max(...after[i].map(depthOf)) : 0);
          const columns = [];
          steps.forEach((_, i) => { const d = depthOf(i); (columns[d] = columns[d] || []).push(i); });
          return el("div", { id: "steps" }, ...columns.filter(Boolean).map(column => el("div", { class: "column" }, ...column.map(i => {
            const step = progress[i] || { state: "pending" };
            return el("div", { class: "step", "data-step": steps[i].id, "data-state": step.state, title: step.error || step.waitingReason || "" },
              el("b", { textContent: steps[i].id }),
              el("span", { textContent: step.state + (step.run ? " · run " + step.run : "") + (step.executor ? " on " + step.executor : "") }),
              el("small", { textContent: after[i].length ? "after " + after[i].map(d => steps[d].id).join(", ") : "first" }));
          }))));
        }
        // The selected job's latest run's output: read once, or followed while the run runs.
        let shownRun = null, stream = null;
        function showLog(job) {
          const run = job.runsStarted, key = job.id + "#" + run;
          if (!run || key === shownRun) return;
          if (stream) stream.abort();
          shownRun = key; stream = new AbortController();
          const lines = el("div", { class: "lines" });
          const box = el("div", { id: "log", "data-run": key, "data-state": "reading" }, el("h2", { textContent: "Output of run " + run }), lines);
          document.getElementById("log").replaceWith(box);
          // The newest 2,000 lines are kept (a long run's output would grow the page without end).
          const line = text => {
            lines.append(el("div", { "data-text": text, textContent: text }));
            while (lines.childElementCount > 2000) lines.firstElementChild.remove();
            lines.scrollTop = lines.scrollHeight;
          };
          const running = job.state === "running";
          (async () => {
            const response = await fetch("/v1/jobs/" + encodeURIComponent(job.id) + "/runs/" + run + "/log" + (running ? "?follow=true" : ""),
              { credentials: "same-origin", signal: stream.signal });
            if (!response.ok) {
              const body = await response.json().catch(() => ({}));
              line(body.message || "no output (" + response.status + ")");
              if (!["succeeded", "failed", "stopped", "cancelled"].includes(job.state)) shownRun = null; // ask again next second
              box.setAttribute("data-state", "unavailable");
              return;
            }
            box.setAttribute("data-state", running ? "following" : "read");
            const reader = response.body.getReader(), decoder = new TextDecoder();
            let partial = "";
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              const parts = (partial + decoder.decode(value, { stream: true })).split("\n");
              partial = parts.pop();
              parts.forEach(line);
            }
            if (partial) line(partial);
            box.setAttribute("data-state", "ended");
          })().catch(error => { if (error.name !== "AbortError") line("(" + error.message + ")"); });
        }
        async function refresh() {
          try {
            const query = "/v1/jobs?order=newest&limit=50" + (filter === "all" ? "" : "&state=" + filter);
            // Executors and counts come from the event stream while it is open.
            const [managers, page, executors, counts] = await Promise.all(
              [get("/v1/managers"), get(query), live ? null : get("/v1/executors"), live ? null : get("/v1/counts").catch(() => null)]);
            if (!live) { renderExecutors(executors); renderCounts(counts); }
            document.getElementById("leader").textContent = managers.leader ? "leader " + managers.leader + " (" + managers.managers + (managers.managers === 1 ? " manager)" : " managers)") : "no leader";
            renderJobs(page); await renderJob();
            document.getElementById("error").textContent = "";
          } catch (error) {
            document.getElementById("error").textContent = "cannot read the API: " + error.message;
          }
        }
        function renderCounts(counts) {
          document.getElementById("counts").textContent = counts
            ? "jobs: " + counts.waiting + " waiting" + (counts.waitingForNoExecutor ? " (" + counts.waitingForNoExecutor + " fit no executor)" : "")
              + ", " + counts.scheduled + " scheduled, " + counts.running + " running" : "";
        }
        // Pushed as they change; EventSource reconnects by itself, and the page reads them once a
        // second meanwhile.
        let live = false;
        if (window.EventSource) {
          const events = new EventSource("/v1/events");
          events.onopen = () => { live = true; };
          events.onerror = () => { live = false; document.body.dataset.executors = "reads"; };
          events.addEventListener("executors", event => {
            live = true; document.body.dataset.executors = "events"; renderExecutors(JSON.parse(event.data));
          });
          events.addEventListener("counts", event => renderCounts(JSON.parse(event.data)));
        }
        let busy = false;
        const tick = async () => { if (busy) return; busy = true; try { await refresh(); } finally { busy = false; } };
        renderFilters(); tick(); setInterval(tick, 1000);
        </script>
        </body>
        </html>
        """#
}
