"""The Django settings autodoc imports the package under (no database, no server)."""

SECRET_KEY = "docs-build-only"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "channels", "django_sse_exec"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
