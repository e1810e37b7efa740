"""A Django re-implementation of the vantage6 4.x central server."""

from pkgutil import extend_path

# The official vantage6 packages (client, common) install into this same package name; let them be
# imported next to the server (tests drive the server with the official client).
__path__ = extend_path(__path__, __name__)

# The vantage6 release whose API this server speaks; nodes pick their image from it.
VANTAGE6_VERSION = "4.15.2"
