"""The workflows and activities a Beluga worker loads by default (`BELUGA_IMPORTS=workers`)."""

from workers import orders  # noqa: F401  (registers the order workflow and its activities)
