"""WeComClient's HTTP path (wechatpy's, with the environment resolved once and answers
read by orjson): the request on the wire is plain wechatpy's, answers are read as wechatpy
reads them, and what the client promises on top (token refresh bounded to once, call
counting, error classes, WECOM_API_BASE, the environment's proxy) still holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from wechatpy.enterprise import WeChatClient

from channels.wecom.client import WeComClient, _decode
from channels.wecom.errors import (
    WeComPermanentError,
    WeComRateLimited,
    WeComRelationGone,
    WeComTokenError,
    WeComTransientError,
)
from channels.wecom.simulator import Simulator
from tests.channels.wecom_support import QuietHandler, new_client, serving, sim_client


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(contacts=120, staff=4, seed=3) as running:
        yield running


@pytest.fixture
def client(sim: Simulator) -> WeComClient:
    return sim_client(sim)


# --- a server that records what it is sent and answers what a test says -------------


@dataclass
class Seen:
    method: str
    target: str  # the request line's target: a path, or a whole URL through a proxy
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    base: str
    seen: list[Seen] = field(default_factory=list)
    #: (status, body) of the next answers to anything but gettoken; then the default
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    default: tuple[int, bytes] = (200, b'{"errcode": 0, "errmsg": "ok"}')


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    state: Recorder

    class Handler(QuietHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            target = self.path
            state.seen.append(
                Seen(
                    method=self.command,
                    target=target,
                    query=parse_qs(urlsplit(target).query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            if urlsplit(target).path.endswith("/gettoken"):
                status, answer = 200, b'{"errcode":0,"access_token":"TOKEN1","expires_in":7200}'
            elif state.answers:
                status, answer = state.answers.pop(0)
            else:
                status, answer = state.default
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = _answer

    with serving(Handler) as server:
        state = Recorder(base=f"http://127.0.0.1:{server.server_port}/cgi-bin/")
        yield state


def business(recorder: Recorder) -> list[Seen]:
    return [s for s in recorder.seen if not urlsplit(s.target).path.endswith("/gettoken")]


# --- the request on the wire ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("post", "externalcontact/batch/get_by_user", {"userid_list": ["张三", "li"], "limit": 9}),
        ("post", "externalcontact/get_corp_tag_list", {}),
        ("get", "externalcontact/get", {"external_userid": "wm+/=x", "cursor": "a b&c"}),
    ],
)
def test_the_request_is_the_one_wechatpy_sends(recorder, method, path, payload) -> None:
    ours = new_client(recorder.base)
    getattr(ours, method)(path, payload)
    # What the client sent through wechatpy before (WECOM.md §3.1).
    wechatpy = WeChatClient("wwcorp", "s3cret", access_token="TOKEN1", timeout=10)
    wechatpy.API_BASE_URL = recorder.base
    if method == "post":
        wechatpy.post(path, data=payload)
    else:
        wechatpy.get(path, params=payload)
    mine, theirs = business(recorder)
    assert (mine.method, mine.target, mine.body) == (theirs.method, theirs.target, theirs.body)
    assert mine.headers == theirs.headers
    assert "content-type" not in mine.headers  # WECOM.md §0
    assert mine.query["access_token"] == ["TOKEN1"]
    if method == "post":
        assert json.loads(mine.body) == payload


def test_a_none_parameter_is_left_out_as_requests_does(recorder) -> None:
    new_client(recorder.base).get("externalcontact/get", {"external_userid": "wm1", "cursor": None})
    (seen,) = business(recorder)
    assert seen.query == {"external_userid": ["wm1"], "access_token": ["TOKEN1"]}


def test_the_environments_proxy_is_honoured(recorder, monkeypatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = recorder.base.removesuffix("cgi-bin/")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    client = new_client("http://wecom.invalid/cgi-bin/")
    client.tokens.cache.set(client.tokens.key, "TOKEN1")
    client.post("externalcontact/batch/get_by_user", {"userid_list": ["a"]})
    (seen,) = business(recorder)
    # Through a plain HTTP proxy the request line carries the whole URL.
    assert seen.target.startswith("http://wecom.invalid/cgi-bin/externalcontact/batch/get_by_user?")
    assert seen.headers["host"] == "wecom.invalid"


# --- answers --------------------------------------------------------------------------


def test_answers_are_read_as_wechatpy_reads_them(recorder) -> None:
    client = new_client(recorder.base)
    recorder.answers = [
        # A control character inside a string: json.loads(strict=False) takes it.
        (200, b'{"errcode": 0, "name": "tab\there"}'),
        # Bytes that are not UTF-8 are dropped.
        (200, b'{"errcode": 0, "name": "a\xffb"}'),
        # A string errcode is read as a number.
        (200, b'{"errcode": "0", "x": 1}'),
        (200, b'{"base_resp": {"errcode": 0, "errmsg": "ok"}, "x": 2}'),
    ]
    assert client.get("a")["name"] == "tab\there"
    assert client.get("a")["name"] == "ab"
    assert client.get("a") == {"errcode": 0, "x": 1}
    assert client.get("a") == {"errcode": 0, "errmsg": "ok", "x": 2}


@pytest.mark.parametrize(
    "content",
    [
        b'{"errcode": 0, "n": 1.5, "s": "\\u4e2d", "l": [1, {"a": null}], "b": true}',
        b'{"n": NaN, "big": 123456789012345678901234567890}',
        b'{"c": "\x01\x1f"}',
        b"[1, 2]",
        b"not json",
        b"",
    ],
)
def test_decode_equals_wechatpys_reading(content) -> None:
    try:
        expected = json.loads(content.decode("utf-8", "ignore"), strict=False)
    except ValueError:
        expected = None
    decoded = _decode(content)
    assert decoded == expected or (decoded != decoded and expected != expected)
    assert json.dumps(decoded) == json.dumps(expected)  # NaN compares by its text


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (500, b"oops", WeComTransientError, "HTTP 500"),
        (503, b"{}", WeComTransientError, "HTTP 503"),
        (404, b"", WeComPermanentError, "HTTP 404"),
        (200, b"<html>", WeComTransientError, "non-JSON"),
        (200, b"[1]", WeComTransientError, "non-JSON"),
        (302, b"", WeComTransientError, "non-JSON"),
    ],
)
def test_http_failures_are_classified(recorder, status, body, error, message) -> None:
    client = new_client(recorder.base)
    recorder.answers = [(status, body)]
    with pytest.raises(error, match=message) as raised:
        client.post("externalcontact/batch/get_by_user", {"userid_list": ["a"]})
    assert type(raised.value) is error
    assert raised.value.errcode is None
    assert raised.value.path == "externalcontact/batch/get_by_user"
    assert client.calls == 1


def test_a_network_error_is_transient() -> None:
    client = new_client("http://127.0.0.1:9/cgi-bin/")  # the discard port: refused
    client.tokens.cache.set(client.tokens.key, "TOKEN1")
    with pytest.raises(WeComTransientError, match="network error") as raised:
        client.get("externalcontact/get_follow_user_list")
    assert raised.value.path == "externalcontact/get_follow_user_list"
    assert client.calls == 1


# --- tokens, counting and error classes against the simulator ---------------------------


def test_an_expired_token_is_refetched_once_and_the_call_retried(sim, client) -> None:
    users = client.follow_users()
    assert client.tokens.fetches == 1 and client.calls == 1
    sim.expire_tokens()
    assert client.follow_users() == users
    assert client.tokens.fetches == 2
    assert client.calls == 3  # the refused call and its retry both count


def test_a_token_refused_twice_is_a_token_error(sim, client) -> None:
    client.follow_users()
    sim.inject(42001, count=2, path="externalcontact/get_follow_user_list")
    with pytest.raises(WeComTokenError) as raised:
        client.follow_users()
    assert raised.value.errcode == 42001
    assert client.tokens.fetches == 2
    assert client.calls == 3


@pytest.mark.parametrize(
    ("errcode", "error"),
    [
        (45009, WeComRateLimited),
        (45033, WeComRateLimited),
        (-1, WeComTransientError),
        (48002, WeComPermanentError),
        (84061, WeComRelationGone),
    ],
)
def test_errcodes_are_classified(sim, client, errcode, error) -> None:
    users = client.follow_users()
    sim.inject(errcode, count=1, path="externalcontact/batch/get_by_user")
    with pytest.raises(error) as raised:
        client.batch_get_by_user(users)
    assert type(raised.value) is error
    assert raised.value.errcode == errcode
    assert raised.value.transient == (error in (WeComRateLimited, WeComTransientError))
    assert client.calls == 2
    # The next call goes through.
    assert client.batch_get_by_user(users)["errcode"] == 0


def test_pages_come_through_whole(sim, client) -> None:
    users = client.follow_users()
    pairs, cursor = [], ""
    while True:
        page = client.batch_get_by_user(users, cursor=cursor)
        pairs += [
            (r["external_contact"]["external_userid"], r["follow_info"]["userid"])
            for r in page["external_contact_list"]
        ]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(pairs) == sorted(sim.relationships())
