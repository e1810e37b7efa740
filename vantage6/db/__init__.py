"""Database backends of the server: Django's, with a cheaper connection check (PostgreSQL) and the
writers of one process queued before SQLite's write lock (SQLite). ``vantage6.settings`` selects them."""
