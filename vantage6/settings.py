"""Settings of the vantage6 server, read from ``V6_`` environment variables only.

Read every variable through the ``vantage6.env`` helpers: they reject bad values with a message naming
the variable and record the name, and a test checks each recorded name has a row in the README table.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from vantage6.env import (
    SettingError,
    env_amqp,
    env_api_path,
    env_bcrypt_hash,
    env_bool,
    env_choice,
    env_database,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "data"))).resolve()

TESTING = "pytest" in sys.modules

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", DATA_DIR)
JWT_SECRET_KEY = env_secret("JWT_SECRET_KEY", DATA_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])

# --- Behind a TLS-terminating proxy ---------------------------------------------------------------
# The proxy tells the scheme in X-Forwarded-Proto: admin cookies only over HTTPS, and HSTS.
BEHIND_TLS = env_bool("BEHIND_TLS", False)
if BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 365 * 24 * 3600

HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 7601, minimum=1, maximum=65535)
API_PATH = env_api_path("API_PATH", "/api")
SERVER_NAME = env_str("SERVER_NAME", "cotopaxi")
# Public URL of this server's API, sent to algorithm stores (config `server_url` + api path upstream).
SERVER_URL = env_str("SERVER_URL", "").rstrip("/")
ROOT_PASSWORD = env_str("ROOT_PASSWORD", "")
if len(ROOT_PASSWORD.encode()) > 72:  # bcrypt reads no more; the value is not echoed
    raise SettingError("V6_ROOT_PASSWORD must be at most 72 bytes long")
# The first root password as a bcrypt hash, e.g. vantage6's `root_user` setting.
ROOT_PASSWORD_HASH = env_bcrypt_hash("INIT_SUPER_PASS_HASHED")
if ROOT_PASSWORD and ROOT_PASSWORD_HASH:
    raise SettingError("set V6_ROOT_PASSWORD or V6_INIT_SUPER_PASS_HASHED, not both")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "channels",
    "accounts",
    "collaborations",
    "nodes",
    "tasks",
]

MIDDLEWARE = [
    # First: nothing may see X-Forwarded-Proto from a peer that is not a trusted proxy.
    "vantage6.api.middleware.ForwardedProtoMiddleware",
    "vantage6.api.middleware.ConstantAnswersMiddleware",
    "vantage6.api.middleware.PrivateAnswersMiddleware",
    "vantage6.api.observability.RequestLogMiddleware",
    "vantage6.api.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Subclasses of Django's session, CSRF, auth and messages middleware that skip API paths.
    "vantage6.api.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "vantage6.api.middleware.CsrfViewMiddleware",
    "vantage6.api.middleware.AuthenticationMiddleware",
    "vantage6.api.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# `/api/user/` is a 404 in vantage6; never redirect to add or remove slashes.
APPEND_SLASH = False

ROOT_URLCONF = "vantage6.urls"
ASGI_APPLICATION = "vantage6.asgi.application"
WSGI_APPLICATION = "vantage6.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "vantage6" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", DATA_DIR / "vantage6.sqlite3")}
# Django's backends with our connection handling (vantage6.db): "sqlite3" or "postgresql".
DATABASES["default"]["ENGINE"] = "vantage6.db." + DATABASES["default"]["ENGINE"].rsplit(".", 1)[1]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Socket consumers and request threads write concurrently: a transaction takes the write lock when
    # it starts, so that it waits for another writer instead of failing with "database is locked"
    # (the threads of one process queue before it, vantage6.db.sqlite3; `timeout`, in seconds, bounds
    # both waits).
    # Write-ahead log: readers never wait for the writer, and a commit costs one fsync of the log
    # instead of several of the journal and the database; synchronous=FULL keeps every commit durable.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE",
        timeout=20,
        init_command="PRAGMA synchronous=FULL",  # and journal_mode=WAL, set by vantage6.db.sqlite3
    )
    # Request threads are pooled (vantage6.handler): each keeps its connection instead of reopening it.
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

AUTH_USER_MODEL = "accounts.User"
# The rule engine alone answers permissions, with and without an object: django-guardian is installed
# but not a backend, so no stored per-object grant can widen what a rule allows (README "Security").
AUTHENTICATION_BACKENDS = ["accounts.backends.RuleBackend"]
SILENCED_SYSTEM_CHECKS = ["guardian.W001"]  # its backend is left out on purpose
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
# The admin pages (vantage6.admin) judge a logged-in user by this function's principal of it.
ADMIN_PRINCIPAL = "accounts.backends.principal_of"

# vantage6 stores naive UTC timestamps and emits them without an offset.
USE_TZ = False
TIME_ZONE = "UTC"
USE_I18N = False
LANGUAGE_CODE = "en-us"

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

# --- API behaviour -------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env_origins("CORS_ALLOWED_ORIGINS", ["*"])
ACCESS_TOKEN_LIFETIME = timedelta(hours=env_int("TOKEN_EXPIRES_HOURS", 6, minimum=1))
REFRESH_TOKEN_LIFETIME = timedelta(hours=env_int("REFRESH_TOKEN_EXPIRES_HOURS", 48, minimum=2))
if REFRESH_TOKEN_LIFETIME <= ACCESS_TOKEN_LIFETIME:
    raise SettingError("V6_REFRESH_TOKEN_EXPIRES_HOURS must exceed V6_TOKEN_EXPIRES_HOURS")
# A user's login ends this long after the password was given, however often it is refreshed. Nodes
# are not capped: the official node cannot log in again by itself (reset its API key to end it).
SESSION_MAX_LIFETIME = timedelta(hours=env_int("SESSION_MAX_HOURS", 168, minimum=1))
# An admin site session (a cookie) ends no later than an API login.
SESSION_COOKIE_AGE = int(SESSION_MAX_LIFETIME.total_seconds())
TWO_FACTOR_AUTH = env_bool("TWO_FACTOR_AUTH", False)
PASSWORD_MAX_FAILED_ATTEMPTS = env_int("PASSWORD_MAX_FAILED_ATTEMPTS", 5, minimum=1)
PASSWORD_INACTIVATION_MINUTES = env_int("PASSWORD_INACTIVATION_MINUTES", 15, minimum=0)
PASSWORD_BETWEEN_USER_EMAILS_MINUTES = env_int("PASSWORD_BETWEEN_USER_EMAILS_MINUTES", 60, minimum=0)
# Password recovery by e-mail waits this long after a user changed their own e-mail address (an access
# token is enough for that change, and a stolen one must not become the account for good).
EMAIL_CHANGE_RECOVERY_HOLD_HOURS = env_int("EMAIL_CHANGE_RECOVERY_HOLD_HOURS", 72, minimum=0)
# Failed logins one client address may make per minute, all server processes together (0: no limit).
LOGIN_FAILURES_PER_MINUTE = env_int("LOGIN_FAILURES_PER_MINUTE", 20, minimum=0, maximum=10_000)
# Password recovery requests one client address may make per hour, all processes together (0: no limit).
RECOVERY_REQUESTS_PER_HOUR = env_int("RECOVERY_REQUESTS_PER_HOUR", 10, minimum=0, maximum=10_000)
# Proxies whose X-Forwarded-For names the client (limits count per client address) and whose
# X-Forwarded-Proto tells the scheme (from any peer when none is listed).
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
# bcrypt cost of user passwords; vantage6 uses 12.
BCRYPT_ROUNDS = env_int("BCRYPT_ROUNDS", 12, minimum=4, maximum=16)
RUNS_DATA_CLEANUP_DAYS = env_int("RUNS_DATA_CLEANUP_DAYS", 0, minimum=0)
RUNS_DATA_CLEANUP_INCLUDE_INPUT = env_bool("RUNS_DATA_CLEANUP_INCLUDE_INPUT", False)
# Large results: "" (off), a folder on disk ("file:///path" or a plain path), or "storage:<alias>".
LARGE_RESULT_STORE = env_str("LARGE_RESULT_STORE", "")
ALGORITHM_STORE_TIMEOUT_SECONDS = env_int("ALGORITHM_STORE_TIMEOUT_SECONDS", 10, minimum=1)
# Stores on loopback, private or link-local addresses are refused unless this is on (development).
ALGORITHM_STORE_ALLOW_PRIVATE = env_bool("ALGORITHM_STORE_ALLOW_PRIVATE", False)
# Store URLs a user's token may be sent to (besides stores linked by a global administrator).
ALGORITHM_STORE_TRUSTED = [url.rstrip("/") for url in env_list("ALGORITHM_STORE_TRUSTED", [])]
# Where a store registered at localhost is tried again (config `dev.host_uri` upstream), e.g.
# host.docker.internal; off when empty.
DEV_HOST_URI = env_str("DEV_HOST_URI", "")
METRICS_ENABLED = env_bool("METRICS", False)

# --- Request limits (vantage6.limits) ---------------------------------------------------------------
# Larger request bodies are answered 413 before they are read; uploads to the blob store with a valid
# access token have their own limit.
MAX_BODY_BYTES = env_int("MAX_BODY_MB", 16, minimum=1, maximum=1024) * 2**20
# Django's own bound of a body read whole (2.5 MiB unless set) would make a 500 of a body within the limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
# What the large fields (runs' inputs, results, logs) of one list page take at most, unless the page's
# rows are no more than the 10 of a default page (``vantage6.api.pagination``).
MAX_PAGE_BYTES = env_int("MAX_PAGE_MB", 64, minimum=1, maximum=1024**2) * 2**20
# What one database statement may take on PostgreSQL, in seconds (0: no bound): a statement that runs
# longer is canceled and its request answered 503, its transaction rolled back. It bounds what one request
# of any account can make the database spend (a list's deep page, a sort of all its rows); migrations and
# the hourly run clean-up are not bound (vantage6.db.postgresql). SQLite has no such bound.
STATEMENT_TIMEOUT_SECONDS = env_int("STATEMENT_TIMEOUT_SECONDS", 30, minimum=0, maximum=24 * 3600)
MAX_BLOB_UPLOAD_BYTES = env_int("MAX_BLOB_UPLOAD_MB", 1024, minimum=1, maximum=1024**2) * 2**20
# What the blobs of one organization may take of the large result store in all (0: no bound).
BLOB_QUOTA_BYTES = env_int("BLOB_QUOTA_MB", 10240, minimum=0, maximum=1024**3) * 2**20
# Open connections (HTTP and websocket) of one server process; further ones are closed at once, so
# that no client can take all of its file descriptors (vantage6.http).
MAX_CONNECTIONS = env_int("MAX_CONNECTIONS", 10000, minimum=1, maximum=1_000_000)
# Of these, what one client address may hold (the peer's, or the one a trusted proxy names), so that one
# client cannot take all of them and lock every node and user out.
MAX_CONNECTIONS_PER_CLIENT = env_int("MAX_CONNECTIONS_PER_CLIENT", 1000, minimum=1, maximum=1_000_000)
# Request threads (of a process's 32, vantage6.handler) one identity may hold at once: a user, node or
# container by its token, all requests without a valid token as one; its further requests wait their
# turn. At least 8: what one client sends at once (a browser's connections to a host, the node's threads).
REQUEST_THREADS_PER_IDENTITY = env_int("REQUEST_THREADS_PER_IDENTITY", 16, minimum=8, maximum=32)
# Of the share of the requests without a valid token, what one client address may hold (as for the login
# limit): one address's flood of slow logins leaves the rest to every other address's. 6: what a browser
# sends to one host at once.
REQUEST_THREADS_PER_ADDRESS = env_int("REQUEST_THREADS_PER_ADDRESS", 6, minimum=1, maximum=32)
# Values (list items, object members) one JSON request body may hold in all (vantage6.nesting):
# each id of a list is validated on its own, and millions fit within the largest body.
MAX_JSON_VALUES = env_int("MAX_JSON_VALUES", 10000, minimum=100, maximum=10_000_000)

# --- E-mail ---------------------------------------------------------------------------------------
EMAIL_HOST = env_str("SMTP_SERVER", "")
EMAIL_PORT = env_int("SMTP_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("SMTP_USERNAME", "")
EMAIL_HOST_PASSWORD = env_str("SMTP_PASSWORD", "")
EMAIL_USE_TLS = env_bool("SMTP_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("SMTP_EMAIL_FROM", "noreply@vantage6.ai")
EMAIL_TOKEN_VALIDITY_MINUTES = env_int("SMTP_EMAIL_TOKEN_VALIDITY_MINUTES", 60, minimum=1)
SUPPORT_EMAIL = env_str("SUPPORT_EMAIL", "support@vantage6.ai")
SMTP_CONFIGURED = bool(EMAIL_HOST)
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if SMTP_CONFIGURED
    else "django.core.mail.backends.console.EmailBackend"
)

# --- Channels --------------------------------------------------------------------------------------
RABBITMQ_URI = env_amqp("RABBITMQ_URI")
# Server processes started by `python -m vantage6.serve` (`make run`), all listening on one address.
# Several need the RabbitMQ layer, since the in-memory one cannot carry events between processes.
WORKERS = env_int("WORKERS", len(os.sched_getaffinity(0)) if RABBITMQ_URI else 1, minimum=1, maximum=64)
if WORKERS > 1 and not RABBITMQ_URI:
    raise SettingError("V6_WORKERS above 1 needs V6_RABBITMQ_URI (processes share events through RabbitMQ)")
RABBITMQ_LAYER_CONFIG = {
    # Bursts (a task for many organizations, a kill list) must not be dropped.
    "local_capacity": 10000,
    "remote_capacity": 10000,
    # A message nobody in the process reads (a channel left in a group by a failed group_discard) is
    # dropped after this many seconds, instead of holding a slot until the process stops receiving.
    "local_expiry": 5,
}
if RABBITMQ_URI:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "vantage6.layers.RabbitmqChannelLayer",
            "CONFIG": {"host": RABBITMQ_URI, **RABBITMQ_LAYER_CONFIG},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}
    }

# --- Sockets ---------------------------------------------------------------------------------------
# Engine.IO ping period and timeout announced to clients, and how long after its last heartbeat a node
# counts as offline (seconds). The defaults are vantage6's; tests shorten them.
SOCKET_PING_INTERVAL = env_int("SOCKET_PING_INTERVAL", 25, minimum=1)
SOCKET_PING_TIMEOUT = env_int("SOCKET_PING_TIMEOUT", 60, minimum=1)
NODE_HEARTBEAT_TIMEOUT = env_int("NODE_HEARTBEAT_TIMEOUT", 65, minimum=2)
# Socket.IO packets (events) one socket may send, and the events of all the sockets of one identity in a
# process: a burst, then a sustained rate per second.
SOCKET_PACKET_BURST = env_int("SOCKET_PACKET_BURST", 200, minimum=1)
SOCKET_PACKET_RATE = env_int("SOCKET_PACKET_RATE", 20, minimum=1)
# Sockets one user / one node may hold in a server process (the UI opens one per tab, the official node one,
# and its reconnect after a network drop may come while the dropped one is still known); a further connect
# ends the oldest.
SOCKET_SESSIONS_PER_USER = env_int("SOCKET_SESSIONS_PER_USER", 20, minimum=1, maximum=1_000_000)
SOCKET_SESSIONS_PER_NODE = env_int("SOCKET_SESSIONS_PER_NODE", 2, minimum=1, maximum=1_000_000)
# Unauthenticated long-polling sessions of one client address in a server process; a new one ends that
# address's oldest.
SOCKET_ANONYMOUS_PER_ADDRESS = env_int("SOCKET_ANONYMOUS_PER_ADDRESS", 100, minimum=1, maximum=1_000_000)
# While the database is away, how often (seconds) a process that went without a beat tries it again before
# a room delivery or a client's event.
SOCKET_BEAT_RETRY_SECONDS = env_int("SOCKET_BEAT_RETRY_SECONDS", 1, minimum=1, maximum=3600)

# --- Django REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "vantage6.api.negotiation.JsonApiNegotiation",
    "DEFAULT_PARSER_CLASSES": ["vantage6.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "vantage6.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "vantage6.api.schema.ApiSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": [],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "vantage6 server API",
    "DESCRIPTION": "The REST API of the vantage6 central server (compatible with vantage6 4.15).",
    "VERSION": "4.15.2",
    "SERVE_INCLUDE_SCHEMA": False,
    # The document and its pages are public: a token sent along (expired, of a container, malformed) is
    # not looked at, as no token is, instead of turning the document away.
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": f"{API_PATH}/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "vantage6.api.schema.link_creations",
    ],
    "ENUM_NAME_OVERRIDES": {
        "AuthStatusEnum": "accounts.models.AuthStatus",
        "RunStatusEnum": "tasks.models.TaskStatus",
    },
    # The docs pages load their scripts from this server, never from a CDN: they work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET_KEY,
    "ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": REFRESH_TOKEN_LIFETIME,
    "USER_ID_CLAIM": "sub",
    "TOKEN_TYPE_CLAIM": "type",
    "JTI_CLAIM": "jti",
    "UPDATE_LAST_LOGIN": False,
}

# --- Logging ----------------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "vantage6.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # A Host header Django refuses is answered 400 (and in the request log): anyone can send one, so
        # no error with a traceback for it.
        "django.security.DisallowedHost": {"level": "CRITICAL"},
        "daphne": {"level": "WARNING"},
    },
}
