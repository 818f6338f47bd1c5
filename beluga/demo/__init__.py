"""The reference design's order workflow, for the demo and for trying a fleet (`BELUGA_IMPORTS=beluga.demo`).

It lives inside the package, not as a top-level `workers` package, so that it can never shadow a
project's own modules and is imported only when named."""

from beluga.demo import orders  # noqa: F401  (registers the order workflow and its activities)
