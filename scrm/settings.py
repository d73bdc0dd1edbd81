"""Settings for the SCRM, read from the environment.

Every value has an embedded default so that a fresh machine with only Python runs the
whole product (SQLite, a server-less Celery broker, the local WeCom simulator). Production
sets DATABASE_URL, REDIS_URL, SECRET_KEY, ALLOWED_HOSTS and WECOM_*. A bad value raises
ImproperlyConfigured naming the variable, so a misconfigured deploy fails at start-up
instead of at the first request.
"""

from __future__ import annotations

import contextlib
import math
import os
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SCRM_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no.")


def _env_number(
    name: str, default: float, *, parse: Callable[[str], float], kind: str, minimum: float
) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # float() also reads "nan" and "inf"
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}.")
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw.strip()} must be at least {minimum}.")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    return int(_env_number(name, default, parse=int, kind="a whole number", minimum=minimum))


def env_float(name: str, default: float, *, minimum: float) -> float:
    return float(_env_number(name, default, parse=float, kind="a number", minimum=minimum))


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

# A dev key is only acceptable while DEBUG is on; a production process must be given one.
_DEV_SECRET_KEY = "dev-insecure-key-only-for-local-debug-never-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = _DEV_SECRET_KEY
elif len(SECRET_KEY) < 32 and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY is too short: use at least 32 random characters.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "scrm",
    "customers",
    "channels",
    "funnel",
    "campaigns",
    "mobile",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "scrm.urls"
WSGI_APPLICATION = "scrm.wsgi.application"
ASGI_APPLICATION = "scrm.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "scrm.context_processors.navigation",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------
# The embedded default is a SQLite file in WAL mode with a busy timeout and IMMEDIATE
# transactions, so the web server, the Celery worker and beat can share it without
# "database is locked" errors on concurrent writes.
_default_sqlite = f"sqlite:///{VAR_DIR / 'scrm.sqlite3'}"
_database_url = os.environ.get("DATABASE_URL", "").strip() or _default_sqlite
try:
    _db: dict[str, Any] = dict(dj_database_url.parse(_database_url, conn_max_age=0))
except ValueError as exc:
    raise ImproperlyConfigured(
        f"DATABASE_URL={_database_url!r} is not a database URL: {exc}"
    ) from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if _db["NAME"] != ":memory:":
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    _db["CONN_HEALTH_CHECKS"] = True
    # JIT compiles each plan anew for the reports' large estimates, costing 100-640 ms a
    # query that runs in a few hundred (bench-funnel); the app's queries never gain from it.
    # The server's default random_page_cost (4) prices a random read as a spinning disk's:
    # with the reports' tables cached or on SSD it chose a sequential scan over the cohort
    # index and the customer look-ups (bench-funnel: cohort grid 360 -> 300 ms, channel
    # report 710 -> 550 ms at 1.1).
    _page_cost = env_float("DATABASE_RANDOM_PAGE_COST", 1.1, minimum=0.01)
    _db.setdefault("OPTIONS", {})["options"] = f"-c jit=off -c random_page_cost={_page_cost:g}"
else:
    raise ImproperlyConfigured(
        f"DATABASE_URL uses {_db['ENGINE']!r}; only PostgreSQL and SQLite are supported."
    )
DATABASES = {"default": _db}
# Bulk writers (the WeCom sync) check their rows' foreign keys once per parent row instead
# of once per written row where the database role may (customers.services._key_checks).
DATABASE_BATCH_KEY_CHECKS = env_bool("DATABASE_BATCH_KEY_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (shared WeCom token, rate limits) -------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss://")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "scrm",
        }
    }
else:
    # A file cache is shared by every local process (web, worker, beat), unlike locmem.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": "scrm",
        }
    }

# --- Celery ----------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip() or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast (pidbox) exchanges; kombu's default is ./control in the working dir.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "").strip() or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "heartbeat": {"task": "scrm.tasks.heartbeat", "schedule": 60.0},
    # Re-enqueue WeCom callback events whose processing was lost, so none stays unprocessed.
    "wecom-requeue-events": {"task": "channels.requeue_wecom_events", "schedule": 60.0},
}
# The SOP dispatcher's beat entries are added below, once SOP_TICK_SECONDS is read.

# --- Auth, i18n, time ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "customers:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
if LANGUAGE_CODE not in {code for code, _name in LANGUAGES}:
    raise ImproperlyConfigured(f"LANGUAGE_CODE={LANGUAGE_CODE!r}: use zh-hans or en.")
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Shanghai")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TIME_ZONE={TIME_ZONE!r} is not an IANA time zone.") from None

# --- Static ----------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
if DEBUG:
    # WhiteNoise warns on every start while STATIC_ROOT is missing; in DEBUG it serves from
    # the finders anyway, so an empty folder is all it needs.
    with contextlib.suppress(OSError):
        STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False

# --- Security --------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API --------------------------------------------------------------------------
API_BULK_MAX_ROWS = env_int("API_BULK_MAX_ROWS", 5000, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "scrm.api.DefaultCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "scrm.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {},
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SCRM API",
    "DESCRIPTION": "Customers, orders, activities, tags, channels and staff of the SCRM.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- WeCom -----------------------------------------------------------------------------
# Demo values point at the local simulator; a production corp sets its own.
WECOM_API_BASE = os.environ.get("WECOM_API_BASE", "https://qyapi.weixin.qq.com/cgi-bin/")
if not WECOM_API_BASE.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"WECOM_API_BASE={WECOM_API_BASE!r} must be an http(s) URL.")
if not WECOM_API_BASE.endswith("/"):
    WECOM_API_BASE += "/"
WECOM_CORP_ID = os.environ.get("WECOM_CORP_ID", "wwdemocorp0000001")
WECOM_SECRET = os.environ.get("WECOM_SECRET", "demo-contact-secret-0000000000000000000000")
WECOM_TOKEN = os.environ.get("WECOM_TOKEN", "demotoken")
# WeCom's OAuth authorize page for staff sign-in on the mobile pages; empty: the official
# page with the official API host, else the API host's own (the simulator serves one).
WECOM_OAUTH_AUTHORIZE_URL = os.environ.get("WECOM_OAUTH_AUTHORIZE_URL", "").strip()
# The agent (self-built app) whose id the JS-SDK's agentConfig needs in the chat sidebar.
WECOM_AGENT_ID = os.environ.get("WECOM_AGENT_ID", "1000002").strip()
WECOM_AES_KEY = os.environ.get("WECOM_AES_KEY", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
# Client-side limits per API path (WECOM.md §1.14: 10,000/min and 150,000/h per corp,
# at most 5 concurrent calls on some APIs), and the HTTP timeout in seconds.
WECOM_RATE_PER_MINUTE = env_int("WECOM_RATE_PER_MINUTE", 10_000, minimum=1)
WECOM_RATE_PER_HOUR = env_int("WECOM_RATE_PER_HOUR", 150_000, minimum=1)
WECOM_MAX_IN_FLIGHT = env_int("WECOM_MAX_IN_FLIGHT", 5, minimum=1)
WECOM_TIMEOUT = env_int("WECOM_TIMEOUT", 10, minimum=1)
# A sync whose worker stopped reporting progress this long ago may be resumed by another.
WECOM_SYNC_LEASE_SECONDS = env_int("WECOM_SYNC_LEASE_SECONDS", 120, minimum=5)
# Writer threads of a sync on PostgreSQL, each on its own connection (a server process):
# the database side of a first sync is most of its work, and one connection uses one core.
WECOM_SYNC_WRITERS = env_int("WECOM_SYNC_WRITERS", 2, minimum=1)
if len(WECOM_AES_KEY) != 43:
    raise ImproperlyConfigured("WECOM_AES_KEY must be the 43-character EncodingAESKey from WeCom.")

# The funnel's covering indexes (INCLUDE columns) serve PostgreSQL's index-only scans;
# SQLite, the embedded default, builds them without those columns, which is harmless, so
# its warning would only be noise on every command.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Funnel (the definitions in README "The AARRR funnel") -----------------------------
# Activity kinds that make a customer activated.
FUNNEL_ACTIVATION_KINDS = env_list(
    "FUNNEL_ACTIVATION_KINDS",
    ["message_received", "member_joined", "coupon_claimed", "form_submitted"],
)
# Kinds the system writes itself: never engagement (retention, cohorts).
FUNNEL_SYSTEM_KINDS = env_list(
    "FUNNEL_SYSTEM_KINDS",
    [
        "touchpoint_sent",
        "touchpoint_done",
        "contact_added",
        "contact_deleted",
        "welcome_sent",
        "message_sent",
        "tag_added",
        "tag_removed",
        "note_added",
        "order_refunded",
    ],
)
# Retention is the first engagement at least this many days after acquisition.
FUNNEL_RETENTION_DAYS = env_int("FUNNEL_RETENTION_DAYS", 7, minimum=1)
if not FUNNEL_ACTIVATION_KINDS:
    raise ImproperlyConfigured("FUNNEL_ACTIVATION_KINDS must name at least one activity kind.")
if set(FUNNEL_ACTIVATION_KINDS) & set(FUNNEL_SYSTEM_KINDS):
    raise ImproperlyConfigured(
        "FUNNEL_ACTIVATION_KINDS and FUNNEL_SYSTEM_KINDS must not share a kind: "
        f"{sorted(set(FUNNEL_ACTIVATION_KINDS) & set(FUNNEL_SYSTEM_KINDS))}."
    )

# Store staff see customers' phone numbers in full (otherwise masked, like 138****0001).
STAFF_SEES_PHONES = env_bool("STAFF_SEES_PHONES", False)

# --- SOPs and campaigns (README "SOPs and campaigns") ------------------------------------
# The dispatcher's beat tick: due touchpoints are claimed at most this long after due_at.
SOP_TICK_SECONDS = env_int("SOP_TICK_SECONDS", 5, minimum=1)
if SOP_TICK_SECONDS > 5:
    raise ImproperlyConfigured(f"SOP_TICK_SECONDS={SOP_TICK_SECONDS}: the tick is at most 5 s.")
# Touchpoints claimed per batch, and how long a claim is held before another worker may
# take the rows of a worker that died. Large batches group better: one add_msg_template
# serves a sender's customers of a batch (bench-sop: 100k due in ~17 s at 20,000, three
# times slower at 5,000), at ~50 MB of worker memory.
SOP_DISPATCH_BATCH = env_int("SOP_DISPATCH_BATCH", 20_000, minimum=1)
SOP_LEASE_SECONDS = env_int("SOP_LEASE_SECONDS", 120, minimum=10)
# Dispatchers running at once on PostgreSQL (each claims with SKIP LOCKED); SQLite has one.
SOP_DISPATCHERS = env_int("SOP_DISPATCHERS", 2, minimum=1)
# A transiently failing touchpoint is retried with backoff this many times, then failed.
SOP_MAX_ATTEMPTS = env_int("SOP_MAX_ATTEMPTS", 8, minimum=1)
# A WeCom message task the staff member has not confirmed after this many days expires.
SOP_CONFIRM_DAYS = env_int("SOP_CONFIRM_DAYS", 3, minimum=1)
# The enterprise-message quota per customer (WECOM.md §1.9): "month" (as many per month as
# the month has days; WeCom's default), "week" (7 a week) or "day" (1 a day).
WECOM_MESSAGE_QUOTA = os.environ.get("WECOM_MESSAGE_QUOTA", "month").strip().lower()
if WECOM_MESSAGE_QUOTA not in {"month", "week", "day"}:
    raise ImproperlyConfigured(
        f"WECOM_MESSAGE_QUOTA={WECOM_MESSAGE_QUOTA!r}: use month, week or day."
    )
# Member points: earned per whole currency unit of a paid order, and per referral.
POINTS_PER_YUAN = env_int("POINTS_PER_YUAN", 1)
POINTS_PER_REFERRAL = env_int("POINTS_PER_REFERRAL", 100)

CELERY_BEAT_SCHEDULE.update(
    {
        # Claim and dispatch due touchpoints (the due table, never broker ETAs).
        "sop-dispatch": {"task": "campaigns.dispatch_tick", "schedule": float(SOP_TICK_SECONDS)},
        # Fetch WeCom's confirmations and send results of open message tasks.
        "sop-confirmations": {"task": "campaigns.poll_message_tasks", "schedule": 60.0},
        # Date and repurchase triggers: idempotent scans (trigger_key), hourly.
        "sop-scheduled-triggers": {"task": "campaigns.scan_triggers", "schedule": 3600.0},
    }
)

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
