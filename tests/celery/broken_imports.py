"""A module of BELUGA_IMPORTS that raises at import, as a half-deployed module or a missing setting
would (tests/celery/test_deploy.py): the worker must not start."""

raise RuntimeError("the deploy left this module broken (raised at import)")
