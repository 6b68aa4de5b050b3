"""Integrations with task runners: Celery and Django's tasks framework."""
