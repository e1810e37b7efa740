"""Database backends of the server: Django's, with a cheaper connection check (PostgreSQL).
``vantage6.settings`` selects them."""
