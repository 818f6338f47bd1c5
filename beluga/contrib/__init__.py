"""Integrations with other frameworks: `beluga.contrib.django`."""
