import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(
    env: dict[str, str], code: str = "import django; django.setup()"
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "scrm.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_secret_key() -> None:
    result = _check({"DEBUG": "0"})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_starts_with_a_real_secret_key() -> None:
    result = _check({"DEBUG": "0", "SECRET_KEY": "x" * 50})
    assert result.returncode == 0, result.stderr


def test_bad_boolean_names_the_variable() -> None:
    result = _check({"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_bad_database_url_names_the_variable() -> None:
    result = _check({"DEBUG": "1", "DATABASE_URL": "mysql://x@y/z"})
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_bad_time_zone_names_the_variable() -> None:
    result = _check({"DEBUG": "1", "TIME_ZONE": "Mars/Olympus"})
    assert result.returncode != 0
    assert "TIME_ZONE='Mars/Olympus'" in result.stderr


def test_bad_random_page_cost_names_the_variable() -> None:
    for raw, says in (
        ("fast", "is not a number"),
        ("nan", "is not a number"),
        ("inf", "is not a number"),
        ("0", "must be at least 0.01"),
    ):
        result = _check(
            {
                "DEBUG": "1",
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/none",
                "DATABASE_RANDOM_PAGE_COST": raw,
            }
        )
        assert result.returncode != 0
        assert f"DATABASE_RANDOM_PAGE_COST={raw}" in result.stderr.replace("'", "")
        assert says in result.stderr


def test_postgresql_connections_carry_the_page_cost() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS']['options'])"
    )
    env = {
        "DEBUG": "1",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/none",
        "DATABASE_RANDOM_PAGE_COST": "2.5",
    }
    result = _check(env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-c", "jit=off", "-c", "random_page_cost=2.5"]
