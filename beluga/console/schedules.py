"""The console's schedules: `/schedules` (every schedule, its state and next tick), `/schedule?id=` (its spec,
policy, counts, next fire times and what became of its recent ticks, with links to their runs) and, with
the token, pause, unpause (each with a note) and trigger. Read and written through the target's executor
(`list_schedules`, ...), so it is the same on a store, the fleet and Temporal."""

from __future__ import annotations

from typing import Any

from beluga.cli import render
from beluga.cli.schedules import spec_text, state
from beluga.console.pages import Page, esc
from beluga.core.errors import ScheduleNotFound
from beluga.schedules import ScheduleDescription


class SchedulePages:
    """Mixed into `Console`: the handlers of the schedule routes (see `ROUTES`)."""

    target: Any

    def schedules(self, req: Any) -> Any:
        from beluga.console import _html

        return _html(200, list_page(self._page(req), self.target.executor().list_schedules()))  # type: ignore[attr-defined]

    def schedule(self, req: Any) -> Any:
        from beluga.console import _html

        d = self._described(req.query.get("id"))
        return _html(200, schedule_page(self._page(req), d, flash=req.query.get("done")))  # type: ignore[attr-defined]

    def schedule_pause(self, req: Any) -> Any:
        return self._schedule_act(req, "pause", lambda ex, sid, note: ex.pause_schedule(sid, note), "paused")

    def schedule_unpause(self, req: Any) -> Any:
        return self._schedule_act(req, "unpause", lambda ex, sid, note: ex.unpause_schedule(sid, note), "unpaused")

    def schedule_trigger(self, req: Any) -> Any:
        return self._schedule_act(req, "trigger", lambda ex, sid, note: ex.trigger_schedule(sid), "triggered")

    def _described(self, schedule_id: str | None) -> ScheduleDescription:
        from beluga.console import HTTPError

        if not schedule_id:
            raise HTTPError(400, "which schedule? give its id (?id=...)")
        try:
            return self.target.executor().describe_schedule(schedule_id)
        except ScheduleNotFound:
            raise HTTPError(404, f"no schedule with id {schedule_id!r} in {self.target.url}") from None

    def _schedule_act(self, req: Any, what: str, act: Any, done: str) -> Any:
        from beluga.console import HTTPError, _text

        self.authorize(req)  # type: ignore[attr-defined]
        schedule_id = str(req.form.get("id") or "")
        if not schedule_id:
            raise HTTPError(400, f"which schedule to {what}? the form has no schedule id")
        self._described(schedule_id)
        act(self.target.executor(), schedule_id, str(req.form.get("note") or "").strip())
        message = f"{done} schedule {schedule_id}"
        if req.wants_html():
            return "303 See Other", [("Location", self._page(req).url("/schedule", id=schedule_id,  # type: ignore
                                                                       done=message))], b""
        return _text(200, message + "\n")


def list_page(page: Page, found: list[ScheduleDescription]) -> str:
    rows = []
    for d in found:
        s = d.schedule
        rows.append(f'<tr data-schedule-id="{esc(s.id)}"><td class="nw"><a class="mono" '
                    f'href="{esc(page.url("/schedule", id=s.id))}">{esc(s.id)}</a></td>'
                    f"<td>{esc(s.workflow_type)}</td><td>{esc(state(s))}</td><td>{esc(spec_text(s))}</td>"
                    f'<td class="nw">{esc(render.when(d.next_times[0] if d.next_times else None))}</td>'
                    f'<td class="num">{s.started}</td><td class="num">{s.skipped}</td><td class="num">{s.missed}</td>'
                    "</tr>")
    table = ('<table id="schedules"><thead><tr><th>schedule</th><th>workflow</th><th>state</th><th>spec</th>'
             '<th>next (UTC)</th><th class="num">started</th><th class="num">skipped</th><th class="num">missed</th>'
             "</tr></thead><tbody>"
             + ("".join(rows) or '<tr><td colspan="8" class="note">no schedules</td></tr>') + "</tbody></table>")
    return page.layout("Schedules", f"<h1>Schedules</h1>{table}")


def schedule_page(page: Page, d: ScheduleDescription, *, flash: str | None = None) -> str:
    s = d.schedule
    facts = [("workflow", esc(s.workflow_type)), ("input", f'<span class="mono">{esc(render.value(s.input, 400))}'
                                                           "</span>"),
             ("state", f'<span id="schedule-state">{esc(state(s))}</span>'), ("spec", esc(spec_text(s))),
             ("policy", esc(f"overlap {s.policy.overlap.value}, catch-up window "
                            f"{render.span(s.policy.catchup_window)}")),
             ("counts", esc(f"started {s.started}, skipped {s.skipped}, missed {s.missed}"))]
    if s.spec.start_at or s.spec.end_at:
        facts.append(("between", esc(f"{render.when(s.spec.start_at)} and {render.when(s.spec.end_at)}")))
    if s.note:
        facts.append(("note", esc(s.note)))
    if s.running:
        facts.append(("open runs", ", ".join(f'<a class="mono" href="{esc(page.run_url(w))}">{esc(w)}</a>'
                                             for w in s.running)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    upcoming = "".join(f"<li>{esc(render.when(t))}</li>" for t in d.next_times) or '<li class="note">none</li>'
    recent = "".join(
        f'<tr><td class="nw">{esc(render.when(f.tick))}</td><td>{esc(f.outcome)}</td><td>'
        + (f'<a class="mono" href="{esc(page.run_url(f.workflow_id))}">{esc(f.workflow_id)}</a>' if f.workflow_id
           else "") + f'</td><td class="note">{esc(f.detail)}</td></tr>' for f in reversed(s.recent))
    ticks = ('<table id="recent"><thead><tr><th>tick (UTC)</th><th>outcome</th><th>run</th><th></th></tr></thead>'
             "<tbody>" + (recent or '<tr><td colspan="4" class="note">no tick yet</td></tr>') + "</tbody></table>")
    body = (f'<p><a href="{esc(page.url("/schedules"))}">\u2190 schedules</a></p>'
            + (f'<div class="flash" id="flash">{esc(flash)}</div>' if flash else "")
            + f'<h1 class="mono">{esc(s.id)}</h1><div class="grid"><div><div class="card"><dl class="facts">{dl}'
            f'</dl></div><h2>Recent ticks</h2>{ticks}</div><div><div class="card"><h2 style="margin-top:0">Next '
            f'fire times</h2><ul id="next">{upcoming}</ul></div>{_actions(page, d)}</div></div>')
    return page.layout(f"Schedule {s.id}", body)


def _actions(page: Page, d: ScheduleDescription) -> str:
    if page.writes != "unlocked":
        return ('<p class="note">' + ("pause, unpause and trigger need the console's token" if page.writes == "locked"
                                      else "read-only console") + "</p>")
    s = d.schedule

    def form(path: str, label: str, ident: str, note: bool) -> str:
        field = (f'<label for="note-{ident}">note</label><input type="text" name="note" id="note-{ident}">'
                 if note else "")
        return (f'<form method="post" action="{esc(page.url(path))}">{page.hidden()}'
                f'<input type="hidden" name="id" value="{esc(s.id)}">{field}'
                f'<button type="submit" id="{ident}">{label}</button></form>')

    toggle = form("/schedule/unpause", "unpause", "unpause", True) if s.paused else \
        form("/schedule/pause", "pause", "pause", True)
    return f'<div class="card actions"><h2 style="margin-top:0">Act</h2>{toggle}' \
           f'{form("/schedule/trigger", "trigger now", "trigger", False)}</div>'
