"""A team's own Celery app with Beluga installed (`beluga.celery.install`), whose own tasks go to the
queue `team`; its broker from TEAM_BROKER_URL. Nothing routes to Celery's default queue `celery`, and
its workers consume only the queues they are given (and Beluga's): a Beluga task left unrouted would
wait there for ever (tests/celery/test_deploy.py)."""

from __future__ import annotations

import os

from celery import Celery

import beluga.celery

app = Celery("team", broker=os.environ["TEAM_BROKER_URL"])
app.conf.task_routes = {"team.*": {"queue": "team"}}
beluga.celery.install(app)


@app.task(name="team.add")
def add(x: int, y: int) -> int:
    return x + y
