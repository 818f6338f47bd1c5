"""`celery -A beluga beluga COMMAND ...`: the `beluga` command as a Celery sub-command, registered
through Celery's `celery.commands` entry-point group (as Flower adds `celery flower`). It acts on the
fleet of the app given with `-A` (`--executor celery` with that app's settings)."""

from __future__ import annotations

import click


@click.command(name="beluga", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def beluga(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Operate Beluga runs on this app's fleet: list, show, start, signal, query, cancel, terminate,
    retry, export, replay (`celery -A beluga beluga --help`)."""
    from beluga.cli import main
    from beluga.settings import Settings

    app = getattr(ctx.obj, "app", None)
    settings = getattr(getattr(app, "conf", None), "beluga_settings", None)
    argv = list(args)
    if not any(a == "--executor" or a.startswith("--executor=") for a in argv):
        argv = ["--executor", "celery", *argv]
    ctx.exit(main(argv, settings=settings if isinstance(settings, Settings) else None,
                  prog="celery -A beluga beluga"))
