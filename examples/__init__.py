"""Small programs that use Beluga the way an application would (see `examples.flask_app`)."""
