"""The dashboard's HTML, rendered on the server (every value escaped here).

The pages work as plain HTML: the login, the job list, a job's numbers, the downloads and
the delete button need no script. ``/static/dashboard.js`` adds the upload (drag and
drop, the column picker), the live progress, the charts, the rate and the time left.

>>> "<b>" in page("x", "<b>hi</b>")
True
>>> "&lt;script&gt;" in _job_row({"job_id": "j", "name": "<script>", "status": "running"})
True
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from mailsift.results import VERDICTS

__all__ = ["page", "login_page", "dashboard_page", "job_page", "not_found_page"]

#: how the states read on the page
STATE_WORDS = {"submitting": "Submitting", "running": "Running", "completed": "Completed",
               "failed": "Failed"}


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _n(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def page(title: str, body: str, *, csrf: str | None = None) -> str:
    """A whole page: ``body`` inside the common head and the script."""
    meta = f'<meta name="csrf-token" content="{_e(csrf)}">' if csrf else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · mailsift</title>
{meta}
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
{body}
</body>
</html>
"""


def _header(csrf: str | None) -> str:
    logout = "" if csrf is None else f"""
<form method="post" action="/logout" class="logout">
<input type="hidden" name="csrf" value="{_e(csrf)}">
<button type="submit" class="secondary">Log out</button>
</form>"""
    return f"""<header class="top"><a class="brand" href="/">mailsift</a>{logout}</header>"""


def login_page(error: str | None = None) -> str:
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return page("Log in", f"""{_header(None)}
<main id="main" class="narrow">
<h1>Log in</h1>
<p>Use an API token of this server (<code>MAILSIFT_API_TOKENS</code>).</p>
{alert}
<form method="post" action="/login" class="stack">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required
       autofocus>
<button type="submit">Log in</button>
</form>
</main>""")


def _job_row(job: dict[str, Any]) -> str:
    job_id = str(job["job_id"])
    name = job.get("name") or job_id[:12]
    state = str(job.get("status") or "")
    return (f'<tr><td><a href="/jobs/{quote(job_id, safe="")}">{_e(name)}</a></td>'
            f'<td><time datetime="{_e(job.get("created_at"))}">{_e(job.get("created_at"))}'
            f'</time></td><td class="num">{_n(job.get("total"))}</td>'
            f'<td class="num">{_n(job.get("done"))}</td>'
            f'<td><span class="state state-{_e(state)}">{_e(STATE_WORDS.get(state, state))}'
            "</span></td></tr>")


def dashboard_page(csrf: str, jobs: list[dict[str, Any]], *, message: str | None = None
                   ) -> str:
    rows = "\n".join(_job_row(j) for j in jobs)
    note = f'<p class="note" role="status">{_e(message)}</p>' if message else ""
    return page("Jobs", f"""{_header(csrf)}
<main id="main">
{note}
<section aria-labelledby="upload-title">
<h1 id="upload-title">Verify a list</h1>
<noscript><p class="note">Uploading here needs JavaScript (the API takes lists without
it: <code>POST /v1/jobs</code>).</p></noscript>
<form id="upload-form" class="stack">
<div id="drop" class="drop">
<p>Drop a CSV or text file here, or choose one.</p>
<label for="file">List file (CSV with an address column, or one address per line)</label>
<input id="file" name="file" type="file" accept=".csv,.txt,text/csv,text/plain" required>
</div>
<div id="column-row" class="stack" hidden>
<label for="column">Address column</label>
<select id="column" name="column"><option value="">Detect automatically</option></select>
</div>
<label for="name">Job name</label>
<input id="name" name="name" maxlength="200" autocomplete="off">
<button type="submit" id="submit">Verify list</button>
<p id="upload-status" role="status" aria-live="polite"></p>
</form>
</section>
<section aria-labelledby="jobs-title">
<h2 id="jobs-title">Jobs</h2>
<div class="scroll">
<table id="jobs">
<thead><tr><th scope="col">Name</th><th scope="col">Created</th>
<th scope="col" class="num">Total</th><th scope="col" class="num">Done</th>
<th scope="col">State</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</div>
<p id="jobs-empty" {"hidden" if jobs else ""}>No jobs yet: verify a list above.</p>
</section>
</main>""", csrf=csrf)


def _download_links(job_id: str) -> str:
    base = f"/v1/jobs/{quote(job_id, safe='')}/results?format=csv&amp;download=true"
    items = [f'<li><a class="button" href="{base}">All rows</a></li>']
    items += [f'<li><a class="button" href="{base}&amp;verdict={v}" data-verdict="{v}">'
              f"Only {v}</a></li>" for v in VERDICTS]
    return "\n".join(items)


def _counts_rows(counts: dict[str, int]) -> str:
    return "\n".join(f'<tr><th scope="row"><span class="dot dot-{v}"></span>{v}</th>'
                     f'<td class="num" id="count-{v}">{_n(counts.get(v, 0))}</td></tr>'
                     for v in VERDICTS)


def job_page(csrf: str, status: dict[str, Any]) -> str:
    job_id = str(status["job_id"])
    name = status.get("name") or job_id
    total, done = status.get("total"), status.get("done") or 0
    pct = 100 if status["status"] == "completed" else (
        min(100, done * 100 // total) if total else 0)
    reasons = "\n".join(f'<tr><th scope="row">{_e(r["reason"])}</th>'
                        f'<td class="num">{_n(r["count"])}</td></tr>'
                        for r in status.get("reasons") or [])
    error = (f'<p class="error" role="alert" id="error">{_e(status["error"])}</p>'
             if status.get("error") else '<p class="error" role="alert" id="error" hidden></p>')
    return page(str(name), f"""{_header(csrf)}
<main id="main" data-job="{_e(job_id)}">
<p><a href="/">← All jobs</a></p>
<h1 id="job-name">{_e(name)}</h1>
<p>State: <strong id="state" class="state state-{_e(status["status"])}">
{_e(STATE_WORDS.get(status["status"], status["status"]))}</strong>
<span id="submitting"></span></p>
{error}
<section aria-labelledby="progress-title">
<h2 id="progress-title">Progress</h2>
<label for="progress" class="sr-only">Progress of the job</label>
<progress id="progress" max="100" value="{pct}">{pct} %</progress>
<span id="percent">{pct} %</span>
<dl class="stats">
<div><dt>Done</dt><dd id="done">{_n(done)} of {_n(total)}</dd></div>
<div><dt>Rate</dt><dd id="rate">—</dd></div>
<div><dt>Time left</dt><dd id="eta">—</dd></div>
</dl>
</section>
<section aria-labelledby="verdicts-title">
<h2 id="verdicts-title">Verdicts</h2>
<svg id="chart-verdicts" class="chart" role="img" aria-labelledby="verdicts-title"
     viewBox="0 0 600 10" preserveAspectRatio="xMinYMin meet"></svg>
<table class="counts"><tbody>
{_counts_rows(status.get("counts") or {})}
</tbody></table>
</section>
<section aria-labelledby="reasons-title">
<h2 id="reasons-title">Top reasons</h2>
<svg id="chart-reasons" class="chart" role="img" aria-labelledby="reasons-title"
     viewBox="0 0 600 10" preserveAspectRatio="xMinYMin meet"></svg>
<details><summary>As a table</summary>
<table class="counts" id="reasons-table"><tbody>
{reasons}
</tbody></table>
</details>
</section>
<section aria-labelledby="download-title">
<h2 id="download-title">Download</h2>
<p>CSV files keep your list's columns and order, with ours added after them.</p>
<ul class="downloads">
{_download_links(job_id)}
</ul>
</section>
<section aria-labelledby="delete-title">
<h2 id="delete-title">Delete</h2>
<form method="post" action="/jobs/{quote(job_id, safe='')}/delete" id="delete-form">
<input type="hidden" name="csrf" value="{_e(csrf)}">
<p>Erases the job's addresses and verdicts everywhere mailsift keeps them.</p>
<button type="submit" class="danger">Delete this job</button>
</form>
</section>
</main>""", csrf=csrf)


def not_found_page(csrf: str | None) -> str:
    return page("Not found", f"""{_header(csrf)}
<main id="main" class="narrow"><h1>Not found</h1>
<p>No such job. <a href="/">Back to the jobs</a></p></main>""", csrf=csrf)
