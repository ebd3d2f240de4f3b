// mailsift dashboard: the upload (drag and drop, column picker), the live job list and a
// job's live progress, charts, rate and time left. No build step, no library: it talks
// to the same /v1 API as any client, with the session cookie and its CSRF token.
(() => {
  "use strict";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const $ = (id) => document.getElementById(id);
  const VERDICTS = ["deliverable", "undeliverable", "risky", "unknown"];
  const STATES = {submitting: "Submitting", running: "Running", completed: "Completed",
                  failed: "Failed"};
  const EMAIL_HEADERS = new Set(["email", "emails", "emailaddress", "mail", "email1",
    "emailid", "correo", "courriel", "adresse", "address"]);
  const SVG = "http://www.w3.org/2000/svg";

  const num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en"));

  async function api(path, options = {}) {
    const headers = Object.assign({"X-CSRF-Token": csrf}, options.headers || {});
    const resp = await fetch(path, Object.assign({credentials: "same-origin"}, options,
                                                 {headers}));
    if (resp.status === 401) { window.location.href = "/"; }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    return {status: resp.status, body};
  }
  const errorText = (r) =>
    (r.body && r.body.error && r.body.error.message) || `the server answered ${r.status}`;

  // one CSV line into cells (quotes as RFC 4180)
  function csvCells(line) {
    const cells = [];
    let cell = "", quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') { cell += '"'; i++; }
        else if (c === '"') { quoted = false; }
        else { cell += c; }
      } else if (c === '"') { quoted = true; }
      else if (c === ",") { cells.push(cell); cell = ""; }
      else { cell += c; }
    }
    cells.push(cell);
    return cells;
  }
  const isCsvFile = (f) => /\.csv$/i.test(f.name) || f.type === "text/csv";

  // ------------------------------------------------------------------- upload
  function setupUpload() {
    const form = $("upload-form");
    if (!form) return;
    const input = $("file"), drop = $("drop"), columnRow = $("column-row");
    const column = $("column"), name = $("name"), status = $("upload-status");
    let file = null;
    let autoName = true;

    async function choose(f) {
      file = f;
      status.textContent = "";
      if (!f) return;
      if (autoName || !name.value) { name.value = f.name; autoName = true; }
      column.replaceChildren(new Option("Detect automatically", ""));
      columnRow.hidden = !isCsvFile(f);
      if (columnRow.hidden) {
        status.textContent = `${f.name}: a text list, one address per line.`;
        return;
      }
      const head = (await f.slice(0, 65536).text()).replace(/^\uFEFF/, "");
      const cells = csvCells(head.split(/\r?\n/)[0] || "");
      let pick = "";
      for (const c of cells) {
        column.append(new Option(c, c));
        const key = c.trim().toLowerCase().replace(/[^a-z0-9]/g, "");
        if (!pick && EMAIL_HEADERS.has(key)) pick = c;
      }
      column.value = pick;
      status.textContent = `${f.name}: ${cells.length} column(s)` +
        (pick ? `; addresses in “${pick}”.` : "; the address column will be detected.");
    }

    input.addEventListener("change", () => choose(input.files[0] || null));
    name.addEventListener("input", () => { autoName = false; });
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const f = e.dataTransfer.files[0];
      if (!f) return;
      try { input.files = e.dataTransfer.files; } catch (err) { /* older browsers */ }
      choose(f);
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!file) { status.textContent = "Choose a file first."; input.focus(); return; }
      const query = new URLSearchParams();
      if (name.value.trim()) query.set("name", name.value.trim());
      const csv = !columnRow.hidden;
      if (csv && column.value) query.set("column", column.value);
      const button = $("submit");
      button.disabled = true;
      status.textContent = `Uploading ${file.name} (${num(file.size)} bytes)…`;
      const r = await api(`/v1/jobs?${query}`, {
        method: "POST", body: file,
        headers: {"Content-Type": csv ? "text/csv" : "text/plain"}});
      button.disabled = false;
      if (r.status === 202 && r.body) {
        status.textContent = "Accepted: opening the job…";
        window.location.href = `/jobs/${encodeURIComponent(r.body.job_id)}`;
        return;
      }
      status.textContent = `Not accepted: ${errorText(r)}`;
    });
  }

  // ------------------------------------------------------------------- job list
  function jobRow(job) {
    const tr = document.createElement("tr");
    const link = document.createElement("a");
    link.href = `/jobs/${encodeURIComponent(job.job_id)}`;
    link.textContent = job.name || job.job_id.slice(0, 12);
    const cells = [link, job.created_at ? new Date(job.created_at).toLocaleString() : "—",
                   num(job.total), num(job.done)];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      if (i >= 2) td.className = "num";
      td.append(value);
      tr.append(td);
    });
    const td = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `state state-${job.status}`;
    badge.textContent = STATES[job.status] || job.status;
    td.append(badge);
    tr.append(td);
    return tr;
  }

  function setupJobs() {
    const table = $("jobs");
    if (!table) return;
    async function refresh() {
      const r = await api("/v1/jobs?limit=100");
      if (r.status === 200 && r.body) {
        table.tBodies[0].replaceChildren(...r.body.jobs.map(jobRow));
        $("jobs-empty").hidden = r.body.jobs.length > 0;
      }
      setTimeout(refresh, 3000);
    }
    refresh();
  }

  // ------------------------------------------------------------------- job page
  function drawBars(svg, items, classOf) {
    const rowHeight = 30, labelWidth = 170, barWidth = 330;
    const most = Math.max(1, ...items.map((it) => it[1]));
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 600 ${Math.max(1, items.length) * rowHeight}`);
    items.forEach(([label, count], i) => {
      const y = i * rowHeight;
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", "0");
      text.setAttribute("y", String(y + 20));
      text.textContent = label;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", String(labelWidth));
      rect.setAttribute("y", String(y + 6));
      rect.setAttribute("height", "18");
      rect.setAttribute("rx", "3");
      rect.setAttribute("width", String(Math.max(count > 0 ? 2 : 0, barWidth * count / most)));
      rect.setAttribute("class", classOf(label));
      const value = document.createElementNS(SVG, "text");
      value.setAttribute("x", String(labelWidth + barWidth * count / most + 8));
      value.setAttribute("y", String(y + 20));
      value.textContent = num(count);
      svg.append(text, rect, value);
    });
    svg.setAttribute("data-drawn", String(items.length));
  }

  function duration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return "—";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function setupJob() {
    const root = document.querySelector("main[data-job]");
    if (!root) return;
    const id = root.dataset.job;
    const samples = [];

    function render(job) {
      const state = $("state");
      state.textContent = STATES[job.status] || job.status;
      state.className = `state state-${job.status}`;
      const total = job.total, done = job.done || 0;
      const pct = job.status === "completed" ? 100
        : (total ? Math.min(100, Math.floor(done * 100 / total)) : 0);
      $("progress").value = pct;
      $("progress").textContent = `${pct} %`;
      $("percent").textContent = `${pct} %`;
      $("done").textContent = `${num(done)} of ${num(total)}`;
      $("submitting").textContent = job.status === "submitting"
        ? ` (${num(job.rows_read)} rows read, ${num(job.submitted)} submitted)` : "";
      const error = $("error");
      error.hidden = !job.error;
      error.textContent = job.error || "";
      const now = Date.now() / 1000;
      samples.push([now, done]);
      while (samples.length > 2 && now - samples[0][0] > 20) samples.shift();
      const [t0, d0] = samples[0];
      let rate = now - t0 > 0.5 ? (done - d0) / (now - t0) : 0;
      if (job.status === "completed" && job.submitted_at && job.completed_at) {
        const elapsed = (Date.parse(job.completed_at) - Date.parse(job.submitted_at)) / 1000;
        rate = elapsed > 0 ? done / elapsed : rate;
      }
      $("rate").textContent = rate > 0 ? `${rate.toFixed(1)} addresses/s` : "—";
      $("eta").textContent = job.status === "completed" ? "done"
        : (rate > 0 && total ? duration((total - done) / rate) : "—");
      const counts = job.counts || {};
      VERDICTS.forEach((v) => { $(`count-${v}`).textContent = num(counts[v] || 0); });
      drawBars($("chart-verdicts"), VERDICTS.map((v) => [v, counts[v] || 0]),
               (v) => `bar-${v}`);
      const reasons = (job.reasons || []).map((r) => [r.reason, r.count]);
      drawBars($("chart-reasons"), reasons, () => "bar-reason");
      const tbody = $("reasons-table").tBodies[0];
      tbody.replaceChildren(...reasons.map(([reason, count]) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = reason;
        const td = document.createElement("td");
        td.className = "num";
        td.textContent = num(count);
        tr.append(th, td);
        return tr;
      }));
      root.dataset.status = job.status;
    }

    async function poll() {
      const r = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      if (r.status === 200 && r.body) render(r.body);
      const final = r.body && (r.body.status === "completed" || r.body.status === "failed");
      if (r.status === 404) return;
      setTimeout(poll, final ? 10000 : 1000);
    }
    poll();

    const del = $("delete-form");
    del.addEventListener("submit", (e) => {
      if (!window.confirm("Delete this job and all its addresses and verdicts?")) {
        e.preventDefault();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupUpload();
    setupJobs();
    setupJob();
  });
})();
