"""A Django re-implementation of the vantage6 4.x central server."""

# The vantage6 release whose API this server speaks; nodes pick their image from it.
VANTAGE6_VERSION = "4.15.2"
