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
  device: "cpu-1t", latency_target_ms: 1.0, strategy: "evolution", budget: { trials: 8, train_steps: 100 }, seed: 0,
  search: { mode: "one-shot", supernet_steps: 300 },
};

const FIELD_OF = [  // where a refusal's field is shown: the first prefix that matches
  ["task.train", "data"], ["task.validation", "data"], ["task", "data"], ["latency_target_ms", "target"],
  ["device", "device"], ["space_options", "options"], ["space", "space"], ["budget", "budget"],
  ["strategy", "strategy"], ["search", "mode"], ["name", "name"], ["file", "data"], ["format", "data"],
];

function fieldRow(key, label, input, help) {
  return el("div", { class: "field", "data-field": key },
    el("label", {}, label, input), help ? el("span", { class: "help" }, help) : null,
    el("span", { class: "field-error", id: `error-${key}` }));
}

async function uploadDataset(file, format) {
  const stem = file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 150) || "data";
  const form = new FormData();
  form.append("name", `${stem}-${Date.now().toString(36)}`);
  form.append("format", format);
  form.append("file", file);
  const response = await fetch(`${API}/datasets`, { method: "POST", headers: { Authorization: `Bearer ${token()}` }, body: form });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(`${response.status}: ${body.detail}`), { problems: body.problems || [] });
  return body;
}

async function jobsPage() {
  const list = el("tbody");
  const table = el("table", { id: "jobs" }, el("thead", {}, el("tr", {},
    ["id", "name", "state", "progress", "target ms", "device", "space", "message"].map((h) => el("th", {}, h)))), list);
  const [devices, datasets] = await Promise.all([getJSON("/devices"), getJSON("/datasets?limit=500")]);
  const input = (attrs) => el("input", attrs);
  const name = input({ id: "job-name", type: "text", placeholder: "optional" });
  const space = el("select", { id: "space" }, el("option", { value: "sparse-transformer" }, "sparse-transformer (language model)"),
    el("option", { value: "pruned-bert" }, "pruned-bert (text classification)"));
  const device = el("select", { id: "device" }, devices.map((d) => el("option", { value: d.name }, d.name)));
  const target = input({ id: "latency-target", type: "number", step: "any", min: "0", value: EXAMPLE_SPEC.latency_target_ms });
  const file = input({ id: "data-file", type: "file" });
  const picked = el("select", { id: "data-dataset" }, el("option", { value: "" }, "(or pick a stored dataset)"),
    el("option", { value: "builtin:python-stdlib" }, "builtin:python-stdlib"),
    datasets.items.map((d) => el("option", { value: `dataset:${d.name}` }, `${d.name} (${d.format})`)));
  const validation = el("select", { id: "data-validation" }, el("option", { value: "" }, "(validation: split the training data)"),
    datasets.items.map((d) => el("option", { value: `dataset:${d.name}` }, `${d.name} (${d.format})`)));
  const trials = input({ id: "budget-trials", type: "number", min: "1", value: EXAMPLE_SPEC.budget.trials });
  const steps = input({ id: "budget-steps", type: "number", min: "1", value: EXAMPLE_SPEC.budget.train_steps });
  const strategy = el("select", { id: "strategy" }, el("option", { value: "" }, "default (evolution for one-shot, nsga2 for standalone)"),
    ["evolution", "nsga2", "tpe", "random"].map((s) => el("option", { value: s }, s)));
  const mode = el("select", { id: "search-mode" }, el("option", { value: "" }, "default (one-shot where the space has a supernet)"),
    el("option", { value: "one-shot" }, "one-shot: a supernet, candidates on inherited weights, finalists trained"),
    el("option", { value: "standalone" }, "standalone: every candidate trained from scratch"));
  const options = input({ id: "space-options", type: "text", value: JSON.stringify(EXAMPLE_SPEC.space_options) });
  const useJson = input({ id: "use-json", type: "checkbox" });
  const spec = el("textarea", { id: "spec", spellcheck: "false" }, JSON.stringify(EXAMPLE_SPEC, null, 2));
  const form = el("form", { class: "submit", id: "submit-form" },
    fieldRow("name", "name ", name),
    fieldRow("space", "search space ", space),
    fieldRow("device", "device ", device),
    fieldRow("target", "latency target (ms) ", target),
    fieldRow("data", "training data ", el("span", {}, file, " ", picked, " ", validation),
             "a file to upload (text for a language model; TSV, CSV or JSONL for classification), or a stored dataset"),
    fieldRow("budget", "budget: trials ", el("span", {}, trials, " training steps per trial (one-shot: per finalist) ", steps)),
    fieldRow("mode", "search mode ", mode),
    fieldRow("strategy", "strategy ", strategy),
    fieldRow("options", "space options (JSON) ", options),
    el("details", { id: "advanced" }, el("summary", {}, "advanced: the whole job spec as JSON"),
      el("label", {}, useJson, " submit this JSON spec instead of the fields above"),
      fieldRow("spec", "job spec (the same as `hwnas search --spec`)", spec)),
    el("button", { type: "submit", id: "submit-job" }, "submit job"));

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
    form.querySelectorAll(".field.invalid").forEach((node) => node.classList.remove("invalid"));
    showError("");
  }
  function showProblems(error) {
    const rest = [];
    for (const problem of error.problems || []) {
      const key = useJson.checked ? "spec" : (FIELD_OF.find(([prefix]) => problem.startsWith(prefix)) || [])[1];
      const box = key && document.getElementById(`error-${key}`);
      if (box) {
        box.textContent += (box.textContent ? "\n" : "") + problem;
        box.closest(".field").classList.add("invalid");
      } else rest.push(problem);
    }
    showError(rest.length || !(error.problems || []).length ? error.message : "");
  }
  async function specFromFields() {
    const classification = space.value === "pruned-bert";
    let train = picked.value;
    if (file.files.length) {
      const ext = file.files[0].name.split(".").pop().toLowerCase();
      const format = classification ? ({ tsv: "tsv", csv: "csv", jsonl: "jsonl", json: "jsonl" }[ext] || "tsv") : "text";
      train = `dataset:${(await uploadDataset(file.files[0], format)).name}`;
    }
    if (!train) throw Object.assign(new Error("training data: choose a file or a dataset"), { problems: ["task.train: choose a file to upload or a stored dataset"] });
    let spaceOptions = {};
    try { spaceOptions = options.value.trim() ? JSON.parse(options.value) : {}; } catch (e) {
      throw Object.assign(new Error("space options: not valid JSON"), { problems: [`space_options: not valid JSON (${e.message})`] });
    }
    const task = classification ? { kind: "classification", train, validation: validation.value || undefined }
      : { kind: "language-modeling", train, validation: validation.value || undefined, seq_len: 64, batch_size: 16 };
    const body = { space: space.value, space_options: spaceOptions, task, device: device.value,
      latency_target_ms: Number(target.value),
      budget: { trials: Number(trials.value), train_steps: Number(steps.value) }, seed: 0 };
    if (strategy.value) body.strategy = strategy.value;  // left out: the server's default for the mode
    if (mode.value) body.search = { mode: mode.value };
    if (name.value.trim()) body.name = name.value.trim();
    return body;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    try {
      let body;
      if (useJson.checked) {
        try { body = JSON.parse(spec.value); } catch (e) {
          throw Object.assign(new Error(`job spec: not valid JSON (${e.message})`), { problems: [`spec: not valid JSON (${e.message})`] });
        }
      } else body = await specFromFields();
      const response = await fetch(`${API}/jobs`, { method: "POST", body: JSON.stringify(body),
        headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json" } });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) throw Object.assign(new Error(`${response.status}: ${answer.detail}`), { problems: answer.problems || [] });
      location.hash = `#/jobs/${answer.job_id}`;
    } catch (error) {
      showProblems(error);
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
      el("td", {}, el("a", { href: `#/jobs/${jobId}/trials/${m.trial}` }, m.trial)), el("td", { title: m.trained_steps === 0 ? "scored on weights inherited from the supernet" : "" },
        fmt(m.metric, 4) + (m.trained_steps === 0 ? " (inherited)" : "")),
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
