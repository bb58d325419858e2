// hwnas web page: jobs list, submit form, a job's Pareto front, trial pages, checkpoint downloads.
// Plain JavaScript over the /api/v1 API with the bearer token kept in this browser's localStorage.
"use strict";

const API = "/api/v1";
const FINISHED = ["completed", "failed", "cancelled"];
const view = document.getElementById("view");
let stopLive = () => {};       // closes the current page's event stream or polling timer
window.hwnas = { charts: {} }; // the page's charts, for tests and the curious

// ---- token and API ------------------------------------------------------------------------------
function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=([^&]+)/);
  if (match) {
    localStorage.setItem("hwnas-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + "#/");
  }
}
const token = () => localStorage.getItem("hwnas-token") || "";

function showTokenState() {
  document.getElementById("token-state").textContent = token() ? "token set" : "no token";
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token-input");
  if (input.value.trim()) localStorage.setItem("hwnas-token", input.value.trim());
  input.value = "";
  showTokenState();
  route();
});

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    const hint = response.status === 401 ? "\nPaste a token in the box above (hwnas token create --scope submit)." : "";
    throw new Error(`${response.status}: ${detail}${hint}`);
  }
  return response;
}
const getJSON = async (path) => (await api("GET", path)).json();

// ---- small DOM helpers --------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const fmt = (value, digits = 3) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const stateBadge = (state) => el("span", { class: `state ${state}` }, state);

// ---- jobs list and submit form ------------------------------------------------------------------
const EXAMPLE_SPEC = {
  name: "demo", space: "sparse-transformer",
  space_options: { max_layers: 2, d_model_choices: [64, 96], heads_choices: [0, 2], moe_experts_choices: [2, 4] },
  task: { kind: "language-modeling", train: "builtin:python-stdlib", seq_len: 64, batch_size: 16 },
  device: "cpu-1t", latency_target_ms: 1.0, strategy: "nsga2", budget: { trials: 8, train_steps: 100 }, seed: 0,
};

async function jobsPage() {
  const list = el("tbody");
  const table = el("table", { id: "jobs" }, el("thead", {}, el("tr", {},
    ["id", "name", "state", "progress", "target ms", "device", "space", "message"].map((h) => el("th", {}, h)))), list);
  const spec = el("textarea", { id: "spec", spellcheck: "false" }, JSON.stringify(EXAMPLE_SPEC, null, 2));
  const target = el("input", { id: "latency-target", type: "number", step: "any", min: "0", value: EXAMPLE_SPEC.latency_target_ms });
  const name = el("input", { id: "job-name", type: "text", value: "" });
  const form = el("form", { class: "submit", id: "submit-form" },
    el("label", {}, "name ", name),
    el("label", {}, "latency target (ms) ", target),
    el("label", {}, "job spec (JSON, the same as `hwnas search --spec`; data paths are read on the server)", spec),
    el("button", { type: "submit", id: "submit-job" }, "submit job"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = JSON.parse(spec.value);
      if (target.value) body.latency_target_ms = Number(target.value);
      if (name.value.trim()) body.name = name.value.trim();
      const job = await (await api("POST", "/jobs", body)).json();
      location.hash = `#/jobs/${job.job_id}`;
    } catch (error) {
      showError(error instanceof SyntaxError ? `job spec: not valid JSON (${error.message})` : error.message);
    }
  });
  view.replaceChildren(el("section", {}, el("h2", {}, "Jobs"), table),
                       el("section", {}, el("h2", {}, "Submit a search job"), form));

  async function refresh() {
    const page = await getJSON("/jobs?limit=100");
    list.replaceChildren(...page.items.map((job) => el("tr", { class: "clickable", "data-job": job.job_id,
      onclick: () => { location.hash = `#/jobs/${job.job_id}`; } },
      el("td", {}, job.job_id), el("td", {}, job.name || ""), el("td", {}, stateBadge(job.state)),
      el("td", {}, el("progress", { max: job.trials_budget, value: job.trials }), ` ${job.trials}/${job.trials_budget}`),
      el("td", {}, job.latency_target_ms), el("td", {}, job.device), el("td", {}, job.space),
      el("td", { class: "muted" }, job.message || ""))));
  }
  await refresh();
  const timer = setInterval(() => refresh().catch((e) => showError(e.message)), 3000);
  stopLive = () => clearInterval(timer);
}

// ---- a job's page -------------------------------------------------------------------------------
async function allTrials(jobId) {
  const items = [];
  for (;;) {
    const page = await getJSON(`/jobs/${jobId}/trials?offset=${items.length}&limit=5000`);
    items.push(...page.items);
    if (!page.items.length || items.length >= page.total) return items;
  }
}

function paretoChart(canvas, front, trials) {
  const onFront = new Set(front.members.map((m) => m.trial));
  const target = front.latency_target_ms;
  const point = (t) => ({ x: t.latency_ms, y: t.metric, trial: t.trial, arch: t.arch_text });
  const trained = trials.filter((t) => t.state === "complete" && t.metric !== null && t.latency_ms !== null
    && !onFront.has(t.trial));
  // Stopped early: their metric is at a lower budget than the others', so they get a series of their own.
  const stopped = trials.filter((t) => t.state === "stopped" && t.metric !== null && t.latency_ms !== null);
  const metrics = trials.filter((t) => t.metric !== null).map((t) => t.metric);
  const floor = metrics.length ? Math.min(...metrics) : 0;
  const ceiling = metrics.length ? Math.max(...metrics) : 1;
  const infeasible = trials.filter((t) => t.state === "infeasible" && t.latency_ms !== null)
    .map((t) => ({ ...point(t), y: front.maximize_metric ? floor : ceiling }));
  const faded = (alpha) => `rgba(120, 128, 140, ${alpha})`;
  const datasets = [
    { label: "Pareto front", data: front.members.map(point), backgroundColor: "#1f6feb", borderColor: "#1f6feb",
      pointRadius: 6, showLine: true, stepped: front.maximize_metric ? "after" : "before", order: 0 },
    { label: "dominated", data: trained.filter((t) => t.latency_ms <= target).map(point), backgroundColor: faded(0.35), pointRadius: 4 },
    { label: "over target", data: trained.filter((t) => t.latency_ms > target).map(point), backgroundColor: "rgba(214, 90, 60, 0.25)", pointRadius: 4 },
    { label: "infeasible (predicted over target, not trained)", data: infeasible, backgroundColor: "rgba(214, 90, 60, 0.2)",
      pointStyle: "crossRot", pointRadius: 6, borderColor: "rgba(214, 90, 60, 0.35)" },
    { label: "stopped early (metric at its last rung)", data: stopped.map((t) => ({ ...point(t), steps: t.steps_done })),
      backgroundColor: "rgba(154, 103, 0, 0.3)", pointStyle: "triangle", pointRadius: 5 },
    { label: `target ${target} ms`, data: [{ x: target, y: floor }, { x: target, y: ceiling }], showLine: true,
      borderColor: "#d1242f", borderDash: [6, 4], pointRadius: 0, borderWidth: 2, order: 5 },
  ];
  return new Chart(canvas, {
    type: "scatter",
    data: { datasets },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "latency (ms; measured when it was, else predicted)" } },
                y: { title: { display: true, text: `${front.metric_name} (${front.maximize_metric ? "higher" : "lower"} is better)` } } },
      plugins: { tooltip: { callbacks: { label: (ctx) => {
        const p = ctx.raw;
        if (p.trial === undefined) return ctx.dataset.label;
        const steps = p.steps === undefined ? "" : ` after ${p.steps} steps (stopped early)`;
        return [`trial ${p.trial}: ${front.metric_name} ${fmt(p.y, 4)} at ${fmt(p.x)} ms${steps}`, p.arch];
      } } } },
      onClick: (_event, elements, chart) => {
        if (!elements.length) return;
        const raw = chart.data.datasets[elements[0].datasetIndex].data[elements[0].index];
        if (raw.trial !== undefined) location.hash = `#/jobs/${front.job_id}/trials/${raw.trial}`;
      },
    },
  });
}

function latencyModelChart(canvas, report) {
  const points = (report.holdout || []).map((p) => ({ x: p.measured_ms, y: p.predicted_ms }));
  const values = points.flatMap((p) => [p.x, p.y]);
  const low = Math.min(...values), high = Math.max(...values);
  return new Chart(canvas, {
    type: "scatter",
    data: { datasets: [
      { label: "held-out archs", data: points, backgroundColor: "rgba(31, 111, 235, 0.6)", pointRadius: 3 },
      { label: "predicted = measured", data: [{ x: low, y: low }, { x: high, y: high }], showLine: true,
        borderColor: "#888", borderDash: [4, 4], pointRadius: 0 },
    ] },
    options: { animation: false, maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "measured ms" } }, y: { title: { display: true, text: "predicted ms" } } } },
  });
}

async function download(jobId, member) {
  try {
    const checkpoint = member.checkpoint
      || await (await api("POST", `/jobs/${jobId}/checkpoints`, { trial: member.trial })).json();
    const response = await api("GET", checkpoint.download_url.replace(API, ""));
    const blob = await response.blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: checkpoint.archive_name });
    document.body.append(link);
    link.click();
    link.remove();
    showError("");
  } catch (error) { showError(error.message); }
}

async function jobPage(jobId) {
  const facts = el("dl", { class: "facts" });
  const bar = el("progress", { id: "job-progress", max: 1, value: 0 });
  const chartBox = el("div", { class: "chart-box" }, el("canvas", { id: "pareto" }));
  const frontBody = el("tbody");
  const modelBox = el("div", { class: "small-chart" }, el("canvas", { id: "latency-model" }));
  const modelFacts = el("p", { class: "muted" });
  const cancel = el("button", { id: "cancel-job", onclick: async () => {
    try { await api("POST", `/jobs/${jobId}/cancel`); } catch (error) { showError(error.message); }
  } }, "cancel");
  view.replaceChildren(
    el("section", {}, el("h2", {}, `Job ${jobId} `, el("span", { id: "job-state" })), bar, " ", cancel, facts),
    el("section", {}, el("h2", {}, "Pareto front"), chartBox,
      el("table", { id: "front" }, el("thead", {}, el("tr", {}, ["trial", "metric", "predicted ms", "measured ms",
        "params", "under target", "arch", "checkpoint"].map((h) => el("th", {}, h)))), frontBody)),
    el("section", {}, el("h2", {}, "Latency model: predicted against measured (held-out archs)"), modelFacts, modelBox));

  let drawnAt = null;
  async function draw(job) {
    document.getElementById("job-state").replaceChildren(stateBadge(job.state));
    bar.max = job.trials_budget; bar.value = job.trials;
    cancel.hidden = FINISHED.includes(job.state);
    const rows = [["name", job.name || ""], ["space", job.space], ["device", job.device],
      ["latency target", `${job.latency_target_ms} ms`], ["trials", `${job.trials}/${job.trials_budget} ${JSON.stringify(job.trial_states)}`],
      ["hypervolume", fmt(job.hypervolume, 4)], ["message", job.message || ""]];
    if (job.checkpoint) rows.push(["exported", `trial ${job.checkpoint.trial}, sha256 ${job.checkpoint.sha256.slice(0, 16)}…`]);
    facts.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    const key = `${job.trials}/${job.state}/${job.checkpoint && job.checkpoint.id}`;
    if (key === drawnAt) return;
    drawnAt = key;
    const [front, trials] = await Promise.all([getJSON(`/jobs/${jobId}/front`), allTrials(jobId)]);
    if (window.hwnas.charts.pareto) window.hwnas.charts.pareto.destroy();
    window.hwnas.charts.pareto = paretoChart(document.getElementById("pareto"), front, trials);
    chartBox.dataset.frontPoints = String(front.members.length);
    frontBody.replaceChildren(...front.members.map((m) => el("tr", {},
      el("td", {}, el("a", { href: `#/jobs/${jobId}/trials/${m.trial}` }, m.trial)), el("td", {}, fmt(m.metric, 4)),
      el("td", {}, m.predicted_latency_ms === null ? "–" : `${fmt(m.predicted_latency_ms)} ± ${fmt(m.predicted_latency_std_ms)}`),
      el("td", {}, fmt(m.measured_latency_ms)), el("td", {}, m.params ?? "–"), el("td", {}, m.under_target ? "yes" : "no"),
      el("td", { class: "arch" }, m.arch_text),
      el("td", {}, FINISHED.includes(job.state) ? el("button", { class: "download", "data-trial": m.trial,
        onclick: () => download(jobId, m) }, m.checkpoint ? "download" : "export + download") : "after the job"))));
    if (job.latency_model && job.latency_model.report && !window.hwnas.charts.latencyModel) {
      modelBox.hidden = false;
      const r = job.latency_model.report;
      modelFacts.textContent = `${job.latency_model.kind} on ${job.device}: MAPE ${fmt(r.mape, 2)}%, ` +
        `${fmt(r.within_10pct, 1)}% within 10%, Kendall tau ${fmt(r.kendall_tau)} over ${r.n_holdout} held-out archs`;
      if ((r.holdout || []).length) window.hwnas.charts.latencyModel = latencyModelChart(document.getElementById("latency-model"), r);
      else modelBox.hidden = true;
    } else if (!job.latency_model) {
      modelFacts.textContent = "no stored latency model for this job (yet): its report appears once one is chosen";
      modelBox.hidden = true;
    }
  }

  const first = await getJSON(`/jobs/${jobId}`);
  await draw(first);
  if (FINISHED.includes(first.state)) return;
  const controller = new AbortController();
  let timer = null;
  stopLive = () => { controller.abort(); clearInterval(timer); };
  const poll = () => { timer = setInterval(async () => {
    try { const job = await getJSON(`/jobs/${jobId}`); await draw(job); if (FINISHED.includes(job.state)) clearInterval(timer); }
    catch (error) { showError(error.message); }
  }, 2000); };
  try {   // server-sent events over fetch (EventSource cannot send the Authorization header); polling if it breaks
    const response = await api("GET", `/jobs/${jobId}/events`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
        if (block.includes("event: progress") && data) await draw(JSON.parse(data));
        if (block.includes("event: end")) { await draw(await getJSON(`/jobs/${jobId}`)); return; }
      }
    }
    poll();
  } catch (error) {
    if (error.name !== "AbortError") poll();
  }
}

async function trialPage(jobId, number) {
  const t = await getJSON(`/jobs/${jobId}/trials/${number}`);
  const rows = [["state", t.state], ["metric", fmt(t.metric, 4)], ["latency (ms)", fmt(t.latency_ms)],
    ["predicted (ms)", t.predicted_latency_ms === null ? "–" : `${fmt(t.predicted_latency_ms)} ± ${fmt(t.predicted_latency_std_ms)}`],
    ["measured (ms)", fmt(t.measured_latency_ms)], ["params", t.params ?? "–"], ["arch", t.arch_text],
    ["arch hash", t.arch_hash], ["worker", t.worker || "–"], ["attempts", t.attempts],
    ["started", t.started_at || "–"], ["finished", t.finished_at || "–"], ["error", t.error || ""]];
  view.replaceChildren(el("section", { id: "trial" }, el("h2", {}, el("a", { href: `#/jobs/${jobId}` }, `Job ${jobId}`), ` › trial ${number}`),
    el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("h3", {}, "metrics"), el("pre", {}, JSON.stringify(t.metrics, null, 2)),
    el("h3", {}, "arch"), el("pre", {}, JSON.stringify(t.arch, null, 2))));
}

// ---- routing ------------------------------------------------------------------------------------
async function route() {
  stopLive(); stopLive = () => {};
  showError("");
  for (const chart of Object.values(window.hwnas.charts)) chart.destroy();
  window.hwnas.charts = {};
  const hash = location.hash.replace(/^#/, "") || "/";
  try {
    let m;
    if ((m = hash.match(/^\/jobs\/(\d+)\/trials\/(\d+)$/))) await trialPage(m[1], m[2]);
    else if ((m = hash.match(/^\/jobs\/(\d+)$/))) await jobPage(m[1]);
    else await jobsPage();
  } catch (error) { showError(error.message); }
}

takeTokenFromFragment();
showTokenState();
window.addEventListener("hashchange", route);
route();
