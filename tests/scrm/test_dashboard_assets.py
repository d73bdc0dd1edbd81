"""Front-end assets are vendored: no CDN, and the files the pages load exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


#: The WeCom JS-SDK is served by WeCom only (and only works inside the WeCom client):
#: the chat sidebar loads it from there, and works without it elsewhere.
WECOM_JS_SDK_HOSTS = ("res.wx.qq.com", "open.work.weixin.qq.com")


def test_templates_load_no_remote_assets() -> None:
    remote = re.compile(r"""(?:src|href)=["'](?:https?:)?//([^/"']+)""")
    offenders = [
        f"{path.relative_to(ROOT)}: {host}"
        for path in (ROOT / "templates").rglob("*.html")
        for host in remote.findall(path.read_text(encoding="utf-8"))
        if host not in WECOM_JS_SDK_HOSTS
    ]
    assert offenders == []


def test_vendored_assets_and_their_licenses_exist() -> None:
    vendor = ROOT / "static" / "vendor"
    for name in (
        "htmx/htmx.min.js",
        "htmx/LICENSE",
        "pico/pico.min.css",
        "pico/LICENSE.md",
        "chartjs/chart.umd.min.js",
        "chartjs/LICENSE.md",
    ):
        assert (vendor / name).is_file(), name


def test_base_template_loads_only_local_static_files() -> None:
    base = (ROOT / "templates" / "base.html").read_text(encoding="utf-8")
    for asset in ("vendor/pico/pico.min.css", "vendor/htmx/htmx.min.js", "css/app.css"):
        assert f"{{% static '{asset}' %}}" in base


def test_compiled_chinese_catalog_is_committed_next_to_its_source() -> None:
    messages = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"
    assert (messages / "django.po").is_file()
    assert (messages / "django.mo").is_file()
