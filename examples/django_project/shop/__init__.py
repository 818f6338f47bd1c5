"""An example Django project that runs Beluga workflows on its own Celery app.

Unlike Celery's usual Django recipe, this package does not import `shop.celery` (whose
`beluga.celery.install(app)` would then run in every process that reads these settings, Beluga's own
`celery -A beluga worker` included); the views import it, so the web process sends through that app."""
