"""The console's reset and its actions on a selection of runs: `POST /run/reset` (one run, to a point) and
`POST /runs/batch` (the runs ticked on the runs page: terminate, cancel, signal, reset or retry). Both go
through the console's one authorization (`Console.authorize`: the token as a bearer, or a logged-in
browser's session with its CSRF field) before anything is read, and act as `beluga reset` and `beluga
batch` do (the same checks and skips, `beluga.cli.batch.make_act`). A selection is at most a page of runs
(`MAX_SELECTION`), done in the request: no journal, since a browser resubmitting the form is made
harmless by the same checks (a closed run is skipped; a signal carries the form's request token as its
sender, and a run that holds it already is skipped)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from beluga.cli.batch_jobs import OPERATIONS, Tally

MAX_SELECTION = 500
SELECTED = "sel:"  # a ticked run's checkbox: `sel:<workflow id>`


class SelectionActions:
    """Mixed into `Console`: the handlers of `/run/reset` and `/runs/batch`."""

    target: Any

    def reset(self, req: Any) -> Any:
        from beluga.cli.reset import reset_one

        def act(workflow_id: str) -> str:
            to = str(req.form.get("to") or "last-good").strip()
            done = reset_one(self.target, workflow_id, to, _identity(req))
            return (f"reset {workflow_id} to event #{done.point}: new run {done.run_id}, {done.dropped_events} "
                    f"event(s) dropped, the old run kept as {done.kept}")

        return self._act(req, "reset", act)  # type: ignore[attr-defined]

    def batch(self, req: Any) -> Any:
        from beluga.cli.batch import make_act
        from beluga.cli.commands import parse_json
        from beluga.console import HTTPError, _text

        self.authorize(req)  # type: ignore[attr-defined]
        op = str(req.form.get("action") or "")
        if op not in OPERATIONS:
            raise HTTPError(400, f"unknown action {op!r}; one of {', '.join(OPERATIONS)}")
        ids = selected(req.form)
        if not ids:
            raise HTTPError(400, "no runs selected: tick the runs to act on")
        if len(ids) > MAX_SELECTION:
            raise HTTPError(400, f"{len(ids)} runs selected; at most {MAX_SELECTION} at once (use `beluga batch`)")
        args: dict[str, Any] = {"reason": str(req.form.get("reason") or "").strip() or "terminated from the console",
                                "to": str(req.form.get("to") or "last-good").strip(), "reapply_signals": True}
        if op == "signal":
            args["name"] = str(req.form.get("name") or "").strip()
            if not args["name"]:
                raise HTTPError(400, "a signal needs a name")
            text = str(req.form.get("payload") or "").strip()
            args["payload"] = parse_json(text, "the payload") if text else None
        token = str(req.form.get("request") or "") or uuid.uuid4().hex  # the form's: a resubmission is the same
        act = make_act(self.target, op, args, f"console-{token}", _identity(req))
        tally, failures = Tally(len(ids)), []
        for workflow_id in ids:
            summary = self.target.store.load_summary(workflow_id)
            if summary is None:
                tally.skipped += 1
                continue
            try:
                skipped = act(workflow_id, summary.run_id, True)
            except Exception as exc:  # noqa: BLE001 - reported with the others; the selection goes on
                tally.failed += 1
                failures.append(f"{workflow_id}: {type(exc).__name__}: {exc}")
                continue
            tally.skipped += bool(skipped)
            tally.done += not skipped
        done = (f"{op} on {tally.total} selected run(s): done {tally.done}, skipped {tally.skipped}, failed "
                f"{tally.failed}" + ("; " + "; ".join(failures[:5]) if failures else ""))
        if req.wants_html():
            return "303 See Other", [("Location", self._page(req).url("/", done=done))], b""  # type: ignore[attr-defined]
        return _text(200, done + "\n")


def selected(form: dict[str, str]) -> list[str]:
    """The ticked runs: checkboxes `sel:<id>`, or a JSON client's `ids` list; in order, each once."""
    ids = [k[len(SELECTED):] for k in form if k.startswith(SELECTED)]
    raw = form.get("ids")
    if raw:
        try:
            listed = json.loads(raw)
        except ValueError:
            listed = [raw]
        ids += [str(x) for x in (listed if isinstance(listed, list) else [listed])]
    return list(dict.fromkeys(i for i in ids if i))


def _identity(req: Any) -> str:
    from beluga.console import identity

    return identity(req)


def selection_bar(page: Any) -> str:
    """The form controls above the runs table (only for a logged-in operator): an action and its
    arguments, applied to the ticked runs."""
    from beluga.console.pages import esc

    options = "".join(f'<option value="{op}">{op}</option>' for op in OPERATIONS)
    return (f'<div class="card actions" id="selection-bar">{page.hidden()}'
            f'<input type="hidden" name="request" value="{uuid.uuid4().hex}">'
            f'<label for="batch-action">with the ticked runs</label>'
            f'<select name="action" id="batch-action" style="width:auto">{options}</select>'
            f'<input type="text" name="reason" id="batch-reason" placeholder="reason (terminate)" style="width:180px">'
            f'<input type="text" name="name" id="batch-signal" placeholder="signal name" style="width:140px">'
            f'<input type="text" name="payload" id="batch-payload" placeholder="payload JSON" style="width:140px">'
            f'<input type="text" name="to" id="batch-to" value="last-good" title="reset point: last-good, first or '
            f'an event id" style="width:110px">'
            f'<button type="submit" class="danger" id="batch-go">Apply</button>'
            f'<span class="note"> the same as <code>beluga batch</code>: closed runs are skipped '
            f"({esc(page.where)})</span></div>")
