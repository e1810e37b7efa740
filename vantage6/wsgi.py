"""WSGI entry point (REST only; Socket.IO needs the ASGI application)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
application = get_wsgi_application()
