"""The console's pages: server-rendered HTML, one inline stylesheet, no script and nothing loaded from
elsewhere. Every value shown is escaped here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from beluga.cli import render
from beluga.cli.runs import RunQuery, RunsPage, RunWaits, attributes_line
from beluga.core.records import Event, EventType, WorkflowState, WorkflowStatus
from beluga.history_json import to_jsonable
from beluga.stores._common import is_kept_copy

E = EventType

CSS = """
:root { --ink:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --accent:#1f5fbf;
        --ok:#157f3b; --bad:#b42318; --warn:#b54708; --run:#1f5fbf; --gone:#667085; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink);
       background:var(--bg); }
header { background:#101828; color:#fff; padding:10px 24px; display:flex; align-items:center; gap:16px; }
header a.brand { color:#fff; font-weight:700; font-size:16px; text-decoration:none; }
header .where { color:#98a2b3; font-size:12px; }
header nav a { color:#d0d5dd; margin-right:8px; font-size:13px; }
header .auth { margin-left:auto; font-size:12px; color:#d0d5dd; display:flex; gap:10px; align-items:center; }
header .auth a, header .auth button { color:#fff; }
header .auth form { margin:0; }
header .auth button { background:none; border:1px solid #475467; border-radius:4px; padding:2px 8px; cursor:pointer; }
main { padding:20px 24px; max-width:1280px; }
h1 { font-size:20px; margin:0 0 12px; } h2 { font-size:15px; margin:22px 0 8px; }
a { color:var(--accent); }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px 16px; }
table { border-collapse:collapse; width:100%; background:#fff; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; color:var(--muted); font-weight:600; background:#fcfcfd; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.nw { white-space:nowrap; }
code, pre, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12.5px; }
pre { white-space:pre-wrap; word-break:break-word; margin:4px 0; background:#f9fafb; border:1px solid var(--line);
      border-radius:4px; padding:6px 8px; max-height:360px; overflow:auto; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
         border:1px solid currentColor; }
.s-running { color:var(--run); } .s-completed { color:var(--ok); } .s-failed, .s-timed_out { color:var(--bad); }
.s-canceled { color:var(--gone); } .s-stuck { color:var(--warn); }
.tabs { display:flex; gap:6px; flex-wrap:wrap; margin-bottom:12px; align-items:center; }
.tabs a { padding:4px 10px; border:1px solid var(--line); border-radius:6px; background:#fff; text-decoration:none;
          color:var(--ink); }
.tabs a.on { border-color:var(--accent); color:var(--accent); font-weight:600; }
.tabs .count { color:var(--muted); margin-left:4px; font-variant-numeric:tabular-nums; }
.tabs form { display:flex; gap:6px; align-items:center; flex-wrap:wrap; }
dl.facts { display:grid; grid-template-columns:120px 1fr; gap:4px 12px; margin:0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
.grid { display:grid; grid-template-columns:minmax(0,3fr) minmax(280px,2fr); gap:16px; align-items:start; }
.waiting li { margin:2px 0; }
.actions form { margin:0 0 12px; }
.actions label { display:block; font-size:12px; color:var(--muted); margin:6px 0 2px; }
input[type=text], input[type=password], textarea, select { font:inherit; padding:5px 8px; border:1px solid #d0d5dd;
       border-radius:6px; width:100%; background:#fff; }
textarea { font-family:ui-monospace,Menlo,Consolas,monospace; min-height:54px; }
button { font:inherit; padding:5px 14px; border-radius:6px; border:1px solid var(--accent); background:var(--accent);
         color:#fff; cursor:pointer; margin-top:6px; }
button.secondary { background:#fff; color:var(--ink); border-color:#d0d5dd; }
button.danger { background:var(--bad); border-color:var(--bad); }
.note { color:var(--muted); font-size:13px; }
.flash { background:#ecfdf3; border:1px solid #abefc6; color:#085d3a; border-radius:6px; padding:8px 12px;
         margin-bottom:14px; }
.error-box { background:#fef3f2; border:1px solid #fecdca; color:#912018; border-radius:6px; padding:10px 12px; }
tr.ev-bad td.type { color:var(--bad); } tr.ev-ok td.type { color:var(--ok); } tr.ev-sig td.type { color:#6941c6; }
tr.ev-timer td.type { color:#b54708; } tr.ev-act td.type { color:var(--ink); } tr.ev-wf td.type { color:var(--accent); }
td.type { white-space:nowrap; font-weight:600; font-size:12.5px; }
details summary { cursor:pointer; color:var(--accent); font-size:12px; }
"""


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def pretty(value: Any) -> str:
    """A value as indented JSON (tagged where JSON lacks the type), for a <pre>."""
    return json.dumps(to_jsonable(value), ensure_ascii=False, indent=2)


def status_badge(state: WorkflowState) -> str:
    stuck = state.status.is_open and bool(state.error)
    label = state.status.value + (" (stuck)" if stuck else "")
    css = "s-stuck" if stuck else f"s-{state.status.value}"
    return f'<span class="badge {css}" data-status="{esc(label)}">{esc(label)}</span>'


class Page:
    """What every page needs to know: where the console is mounted, who is looking, what it runs on."""

    def __init__(self, root: str, *, where: str, writes: str, csrf: str | None, title: str = "Beluga") -> None:
        self.root = root          # the mount point (SCRIPT_NAME), "" at the top
        self.where = where        # the store or fleet, shown in the header
        self.writes = writes      # "read-only", "locked" (a token is needed) or "unlocked"
        self.csrf = csrf
        self.title = title

    def url(self, path: str, **query: Any) -> str:
        q = {k: v for k, v in query.items() if v not in (None, "", False)}
        return self.root + path + ("?" + urlencode(q) if q else "")

    def run_url(self, workflow_id: str) -> str:
        return self.url("/run", id=workflow_id)

    def hidden(self) -> str:
        return f'<input type="hidden" name="csrf" value="{esc(self.csrf)}">' if self.csrf else ""

    def layout(self, title: str, body: str, *, refresh: int | None = None) -> str:
        if self.writes == "read-only":
            auth = '<span title="start the console with a token to allow writes">read-only</span>'
        elif self.writes == "locked":
            auth = f'<a id="login-link" href="{esc(self.url("/login"))}">log in to act on runs</a>'
        else:
            auth = (f'<span id="logged-in">writes enabled</span>'
                    f'<form method="post" action="{esc(self.url("/logout"))}">'
                    f'{self.hidden()}<button type="submit">log out</button></form>')
        meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{esc(title)} · {esc(self.title)}</title><style>{CSS}</style></head><body>"
                f'<header><a class="brand" href="{esc(self.url("/"))}">{esc(self.title)} console</a>'
                f'<nav><a href="{esc(self.url("/"))}" id="nav-runs">runs</a> '
                f'<a href="{esc(self.url("/schedules"))}" id="nav-schedules">schedules</a></nav>'
                f'<span class="where">{esc(self.where)}</span><div class="auth">{auth}</div></header>'
                f"<main>{body}</main></body></html>")


# --- the runs -----------------------------------------------------------------------------------------
def runs_page(page: Page, listed: RunsPage, counts: dict[str, int], *, query: RunQuery, search: str, exact: bool,
              types: Iterable[str], limit: int, flash: str | None = None, where: str = "") -> str:
    """The runs: tabs by status (and stuck) whose counts are the rows their pages hold, a search by
    workflow id and one by search attributes, filters, and the page with links to the pages beside it."""
    keep = {"type": query.workflow_type, "q": search, "match": "exact" if exact else None, "all": query.archives,
            "limit": limit if limit != 50 else None, "where": where or None}
    status = query.status.value if query.status else None
    total = sum(counts.get(s.value, 0) for s in WorkflowStatus)
    tabs = [_tab(page, "all", "all", total, status is None and not query.stuck, keep)]
    for s in WorkflowStatus:
        tabs.append(_tab(page, s.value, s.value, counts.get(s.value, 0), status == s.value and not query.stuck,
                         {**keep, "status": s.value}))
        if s is WorkflowStatus.RUNNING:
            tabs.append(_tab(page, "stuck", "stuck", counts.get("stuck", 0), query.stuck, {**keep, "stuck": 1}))
    options = ['<option value="">every type</option>'] + [
        f'<option value="{esc(t)}"{" selected" if t == query.workflow_type else ""}>{esc(t)}</option>'
        for t in sorted(set(types) | ({query.workflow_type} if query.workflow_type else set()))]
    matching = "".join(f'<option value="{v}"{" selected" if (v == "exact") == exact else ""}>{label}</option>'
                       for v, label in (("prefix", "id starts with"), ("exact", "id is")))
    filters = (f'<form method="get" action="{esc(page.url("/"))}" id="filters">'
               + (f'<input type="hidden" name="status" value="{esc(status)}">' if status else "")
               + ('<input type="hidden" name="stuck" value="1">' if query.stuck else "")
               + f'<select name="match" id="match" style="width:auto">{matching}</select>'
               f'<input type="text" name="q" id="search" value="{esc(search)}" placeholder="workflow id" '
               f'style="width:220px">'
               f'<input type="text" name="where" id="where" value="{esc(where)}" '
               f'placeholder="customer=c-42 amount>=10" title="search attributes: name=value, name>=value, ... '
               f'(all hold)" style="width:240px">'
               f'<select name="type" id="type-filter" style="width:auto">{"".join(options)}</select>'
               f'<label class="note"><input type="checkbox" name="all" value="1"'
               f'{" checked" if query.archives else ""}> '
               f'kept copies of retried runs</label><button type="submit" class="secondary" id="filter">filter</button>'
               "</form>")
    pick = page.writes == "unlocked"  # a logged-in operator ticks runs and applies an action to them
    rows = [_run_row(page, s, pick) for s in listed.runs]
    table = ('<table id="runs"><thead><tr>' + ("<th></th>" if pick else "") + '<th>workflow id</th><th>type</th>'
             '<th>status</th><th>started (UTC)</th><th>updated (UTC)</th><th class="num">events</th><th>error</th>'
             '</tr></thead><tbody>'
             + ("".join(rows) or '<tr><td colspan="9" class="note">no runs match</td></tr>') + "</tbody></table>")
    if pick and listed.runs:
        from beluga.console.actions import selection_bar

        table = (f'<form method="post" action="{esc(page.url("/runs/batch"))}" id="selection">'
                 f"{selection_bar(page)}{table}</form>")
    here = {**keep, "status": status, "stuck": 1 if query.stuck else None}
    links = []
    if listed.newer:
        links.append(f'<a id="newer" href="{esc(page.url("/", **here, cursor=listed.newer))}">\u2190 newer</a>')
    if listed.older:
        links.append(f'<a id="older" href="{esc(page.url("/", **here, cursor=listed.older))}">older \u2192</a>')
    if listed.newer:
        links.append(f'<a id="newest" href="{esc(page.url("/", **here))}">newest</a>')
    pager = (f'<p class="note pager">newest first; {len(listed.runs)} on this page (of {limit})'
             + (" \u00b7 " + " \u00b7 ".join(links) if links else "") + "</p>")
    note = f'<p class="flash" id="flash">{esc(flash)}</p>' if flash else ""
    return page.layout("Runs", f'<h1>Runs</h1>{note}<div class="tabs">{"".join(tabs)}</div>'
                               f'<div class="tabs">{filters}</div>{table}{pager}')


def _run_row(page: Page, s: WorkflowState, pick: bool) -> str:
    full = render.error_line(s.error) or ""
    error = full if len(full) <= 90 else full[:89] + "\u2026"  # the whole line on hover, and on the run's page
    tick = (f'<td><input type="checkbox" name="sel:{esc(s.workflow_id)}" value="1" '
            f'aria-label="select {esc(s.workflow_id)}"></td>' if pick else "")
    return (f'<tr data-workflow-id="{esc(s.workflow_id)}">{tick}'
            f'<td class="nw"><a href="{esc(page.run_url(s.workflow_id))}" class="mono">'
            f'{esc(s.workflow_id)}</a></td><td>{esc(s.workflow_type)}</td><td class="nw">{status_badge(s)}</td>'
            f'<td class="nw">{esc(render.when(s.created_at))}</td>'
            f'<td class="nw">{esc(render.when(s.updated_at))}</td>'
            f'<td class="num">{len(s.history)}</td><td title="{esc(full)}">{esc(error)}</td>'
            f'<td class="attrs">{esc(attributes_line(s.search_attributes))}</td></tr>')


def _tab(page: Page, ident: str, label: str, count: int, on: bool, query: dict[str, Any]) -> str:
    return (f'<a class="{"on" if on else ""}" id="tab-{esc(ident)}" href="{esc(page.url("/", **query))}">'
            f'{esc(label)}<span class="count" id="count-{esc(ident)}">{count}</span></a>')


# --- one run ------------------------------------------------------------------------------------------
def run_page(page: Page, state: WorkflowState, wait: RunWaits | None, earlier: Sequence[WorkflowState], *,
             flash: str | None, refresh: int | None, retryable: bool) -> str:
    facts = [("workflow id", f'<span class="mono" id="workflow-id">{esc(state.workflow_id)}</span>'),
             ("type", esc(state.workflow_type)), ("run", f'<span class="mono">{esc(state.run_id)}</span>'),
             ("status", f'<span id="status">{status_badge(state)}</span>'),
             ("started", esc(render.when(state.created_at))), ("updated", esc(render.when(state.updated_at)))]
    if state.queue:
        facts.append(("queue", esc(state.queue)))
    if state.parent:
        parent = str(state.parent.get("workflow_id"))
        seq = esc(state.parent.get("seq"))
        facts.append(("parent", f'<a href="{esc(page.run_url(parent))}">{esc(parent)}</a> (seq {seq})'))
    if state.search_attributes:
        facts.append(("search attributes", f'<span id="search-attributes">'
                                           f'{esc(attributes_line(state.search_attributes))}</span>'))
    if state.memo is not None:
        facts.append(("memo", f'<pre id="memo">{esc(pretty(state.memo))}</pre>'))
    facts.append(("input", f"<pre>{esc(pretty(state.input))}</pre>"))
    if state.status is WorkflowStatus.COMPLETED:
        facts.append(("result", f'<pre id="result">{esc(pretty(state.result))}</pre>'))
    if state.error:
        facts.append(("error", error_block(state.error, "error")))
    body = [f"<h1>Run {esc(state.workflow_id)}</h1>"]
    if flash:
        body.append(f'<div class="flash" id="flash">{esc(flash)}</div>')
    left = [f'<div class="card"><dl class="facts">{"".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)}</dl></div>']
    if wait is not None:
        items = "".join(f"<li>{esc(line.strip())}</li>" for line in render.waiting_lines(wait))
        left.append(f'<h2>Waiting on</h2><div class="card"><ul class="waiting" id="waiting">{items}</ul></div>')
    if state.parent:
        parent = str(state.parent.get("workflow_id", ""))
        left.append(f'<h2>Parent</h2><div class="card" id="parent"><a href="{esc(page.run_url(parent))}">'
                    f"{esc(parent)}</a> (child seq {esc(state.parent.get('seq'))})</div>")
    children = [(e.attrs.get("workflow_id"), e.attrs.get("workflow_type"), e.attrs.get("seq")) for e in state.history
                if e.type == EventType.CHILD_WORKFLOW_STARTED]
    if children:
        items = "".join(f'<li><a href="{esc(page.run_url(str(wid)))}">{esc(wid)}</a> {esc(kind)} (seq {esc(seq)})</li>'
                        for wid, kind, seq in children)
        left.append(f'<h2>Children</h2><div class="card"><ul id="children">{items}</ul></div>')
    if earlier:
        items = "".join(f'<li><a href="{esc(page.run_url(s.workflow_id))}">{esc(s.workflow_id)}</a> '
                        f"{status_badge(s)} run {esc(s.run_id)}, started {esc(render.when(s.created_at))}</li>"
                        for s in earlier)
        left.append(f'<h2>Earlier runs (retried)</h2><div class="card"><ul>{items}</ul></div>')
    right = [f"<h2 style=\"margin-top:0\">Actions</h2>{actions(page, state, wait, retryable)}",
             f'<p class="note"><a href="{esc(page.url("/run/export", id=state.workflow_id))}">export the history as '
             f'JSON</a> (for <code>beluga replay</code>) · '
             + (f'<a href="{esc(page.run_url(state.workflow_id))}">stop refreshing</a>' if refresh else
                f'<a href="{esc(page.url("/run", id=state.workflow_id, refresh=3))}">refresh every 3 s</a>') + "</p>"]
    body.append(f'<div class="grid"><div>{"".join(left)}</div><div>{"".join(right)}</div></div>')
    body.append(f"<h2>History <span class=\"note\">{len(state.history)} events</span></h2>{timeline(state.history)}")
    return page.layout(f"Run {state.workflow_id}", "".join(body), refresh=refresh)


def actions(page: Page, state: WorkflowState, wait: RunWaits | None, retryable: bool) -> str:
    if not state.status.is_open and not retryable:
        if is_kept_copy(state.workflow_id) or page.writes != "unlocked":
            return f'<p class="note">The run is {esc(state.status.value)}: nothing to do.</p>'
        return reset_form(page, f'<input type="hidden" name="id" value="{esc(state.workflow_id)}">{page.hidden()}')
    if page.writes == "read-only":
        return ('<p class="note" id="read-only">This console is read-only. Start it with a token '
                "(<code>BELUGA_CONSOLE_TOKEN</code>) to signal, cancel, terminate and retry runs.</p>")
    if page.writes == "locked":
        return (f'<p class="note"><a href="{esc(page.url("/login", next=page.run_url(state.workflow_id)))}">Log in</a> '
                "with the console's token to signal, cancel, terminate or retry this run.</p>")
    ident = f'<input type="hidden" name="id" value="{esc(state.workflow_id)}">{page.hidden()}'
    if not state.status.is_open:
        return (f'<form class="actions" method="post" action="{esc(page.url("/run/retry"))}">{ident}'
                f'<p class="note">Start it again from the start: a new run under the same id with the same input; '
                f"this run is kept as <code>{esc(state.workflow_id)}/runs/&lt;n&gt;</code>.</p>"
                f'<button type="submit" id="retry">Retry</button></form>' + reset_form(page, ident))
    parked = list(wait.code.waiting_for_signals) if wait is not None and wait.code is not None else []
    name = parked[0] if parked else ""
    return (f'<div class="card actions">'
            f'<form method="post" action="{esc(page.url("/run/signal"))}" id="signal-form">{ident}'
            f'<label for="signal-name">signal</label>'
            f'<input type="text" name="name" id="signal-name" value="{esc(name)}" required>'
            f'<label for="signal-payload">payload (JSON, optional)</label>'
            f'<textarea name="payload" id="signal-payload" placeholder="&quot;approved&quot;"></textarea>'
            f'<button type="submit" id="signal-send">Send signal</button></form>'
            f'<form method="post" action="{esc(page.url("/run/cancel"))}">{ident}'
            f'<button type="submit" class="secondary" id="cancel">Request cancellation</button>'
            f'<span class="note"> the workflow may clean up</span></form>'
            f'<form method="post" action="{esc(page.url("/run/terminate"))}">{ident}'
            f'<label for="terminate-reason">reason</label><input type="text" name="reason" id="terminate-reason">'
            f'<button type="submit" class="danger" id="terminate">Terminate</button>'
            f'<span class="note"> closes it at once; no workflow code runs</span></form>'
            f'{reset_form(page, ident)}</div>')


def reset_form(page: Page, ident: str) -> str:
    return (f'<form class="actions" method="post" action="{esc(page.url("/run/reset"))}" id="reset-form">{ident}'
            f'<label for="reset-to">reset to</label><input type="text" name="to" id="reset-to" value="last-good" '
            f'style="width:110px"><button type="submit" class="secondary" id="reset">Reset</button>'
            f'<span class="note"> a new run replays the history up to that point (an event id, last-good or first) '
            f"and goes on with the current code; an open run is terminated first</span></form>")


def error_block(error: dict[str, Any], what: str) -> str:
    line = render.error_line(error) or ""
    trace = str(error.get("traceback") or "")
    text = f'<div class="error-box" id="{esc(what)}">{esc(line)}'
    if trace:
        text += f"<details><summary>traceback</summary><pre>{esc(trace)}</pre></details>"
    cause = error.get("cause")
    if isinstance(cause, dict):
        text += f'<div class="note">caused by</div>{error_block(cause, what + "-cause")}'
    return text + "</div>"


def _kind(ev: Event) -> str:
    t = ev.type
    if t in (E.ACTIVITY_FAILED, E.WORKFLOW_FAILED, E.CHILD_WORKFLOW_FAILED, E.WORKFLOW_TIMED_OUT,
             E.WORKFLOW_TERMINATED):
        return "bad"
    if t == E.UPDATE_COMPLETED:
        return "bad" if "error" in ev.attrs else "ok"
    if t in (E.ACTIVITY_COMPLETED, E.WORKFLOW_COMPLETED, E.CHILD_WORKFLOW_COMPLETED):
        return "ok"
    if t in (E.SIGNAL_RECEIVED, E.UPDATE_ACCEPTED):
        return "sig"
    if t in (E.TIMER_STARTED, E.TIMER_FIRED):
        return "timer"
    if t.startswith("workflow"):
        return "wf"
    return "act"


_VALUES = ("input", "result", "payload", "value")


def timeline(events: Sequence[Event]) -> str:
    """The history, one row per event: its id, the time since the run started, its type, what it says;
    errors with their traceback and long values in full, folded."""
    if not events:
        return '<p class="note">(no events)</p>'
    start = events[0].timestamp
    rows = []
    for ev in events:
        extra = []
        error = ev.attrs.get("error")
        if isinstance(error, dict) and error.get("traceback"):
            extra.append(f"<details><summary>traceback</summary><pre>{esc(error['traceback'])}</pre></details>")
        for key in _VALUES:
            if key in ev.attrs and len(render.value(ev.attrs[key], 10_000)) > 60:
                extra.append(f"<details><summary>{esc(key)}</summary><pre>{esc(pretty(ev.attrs[key]))}</pre></details>")
        text = render.describe(ev) + ("  (deferred)" if ev.attrs.get("deferred") else "")
        rows.append(f'<tr class="ev-{_kind(ev)}" data-type="{esc(ev.type)}"><td class="num">{ev.id}</td>'
                    f'<td class="num mono">+{esc(render.span(ev.timestamp - start))}</td>'
                    f'<td class="mono">{esc(render.iso(ev.timestamp))}</td><td class="type">{esc(ev.type)}</td>'
                    f'<td><span class="mono">{esc(text)}</span>{"".join(extra)}</td></tr>')
    return ('<table id="history"><thead><tr><th class="num">#</th><th class="num">after</th><th>at (UTC)</th>'
            f'<th>event</th><th>details</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


# --- the rest ------------------------------------------------------------------------------------------
def login_page(page: Page, *, next_url: str, problem: str | None = None) -> str:
    if page.writes == "read-only":
        body = ('<h1>Log in</h1><div class="card"><p id="read-only">This console is read-only: it was started without '
                "a token, so nobody can signal, cancel, terminate or retry runs from it. Start it with "
                "<code>BELUGA_CONSOLE_TOKEN</code> set (or <code>--token-file</code>) to allow that.</p></div>")
        return page.layout("Log in", body)
    warn = f'<div class="error-box" id="login-problem">{esc(problem)}</div>' if problem else ""
    body = (f'<h1>Log in</h1><div class="card" style="max-width:420px">{warn}'
            f'<form method="post" action="{esc(page.url("/login"))}">'
            f'<input type="hidden" name="next" value="{esc(next_url)}">'
            f'<label for="token">the console\'s token</label><input type="password" name="token" id="token" '
            f'autocomplete="current-password" required><button type="submit" id="login">Log in</button></form>'
            '<p class="note">Reading runs needs no token; signalling, cancelling, terminating and retrying '
            "them do.</p></div>")
    return page.layout("Log in", body)


def error_page(page: Page, status: int, message: str) -> str:
    titles = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed", 409: "Conflict",
              500: "Error", 503: "Unavailable"}
    title = titles.get(status, "Error")
    return page.layout(title, f'<h1>{status} {esc(title)}</h1><div class="error-box" id="error">{esc(message)}</div>'
                              f'<p><a href="{esc(page.url("/"))}">all runs</a></p>')

