"""One of the team's ordinary Celery tasks, running on the same workers as Beluga's."""

from celery import shared_task


@shared_task
def add(x: int, y: int) -> int:
    return x + y
