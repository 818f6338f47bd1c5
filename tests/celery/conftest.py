"""The fleet fixtures live in tests/conftest.py, shared with the executor contract suite."""
