"""WeCom errors, classified once so that every caller retries or gives up the same way.

WeCom answers errors with HTTP 200 and an ``errcode`` (WECOM.md §0, §1.13). Transient
errors (busy, rate limits, network, 5xx) are retried with backoff by Celery's
``autoretry_for=TRANSIENT_ERRORS``; permanent ones fail at once with a message that says
what to fix, because retrying a wrong secret only gets the corp's gettoken blocked.
"""

from __future__ import annotations

from typing import Any

# errcode -> what the operator should fix. Codes missing here are still permanent.
PERMANENT_HINTS: dict[int, str] = {
    40001: "the secret is wrong: check WECOM_SECRET (the 客户联系 secret of the corp)",
    40003: "the userid is not a member of the corp",
    40013: "the corp id is wrong: check WECOM_CORP_ID",
    40091: "the secret is malformed: check WECOM_SECRET",
    40096: "the external_userid is not valid for this corp",
    41001: "the request carried no access_token",
    41050: "the welcome code expired (20 s) or is invalid",
    41051: "the customer and the staff member already started chatting; no welcome message",
    48002: "this secret may not call customer-contact APIs: use the 客户联系 secret "
    "or list the app under 可调用应用",
    60011: "the app's visible range does not include this member or department",
    60111: "the userid does not exist in the corp",
    84061: "the customer is no longer a contact of that staff member",
    84074: "the app has no customer-contact permission",
}

#: errcodes worth retrying (WECOM.md §1.13): busy, data-version conflict, mass message
#: still dispatching, frequency and concurrency limits.
TRANSIENT_CODES = frozenset({-1, 6000, 41063, 45009, 45033})
#: errcodes that mean "fetch a new access token and try once more".
TOKEN_CODES = frozenset({40014, 42001})
#: errcodes from gettoken that no retry can fix.
CREDENTIAL_CODES = frozenset({40001, 40013, 40091})


class WeComError(Exception):
    """An error answered by WeCom (or on the way to it)."""

    transient = False

    def __init__(self, errcode: int | None, errmsg: str, *, path: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        hint = PERMANENT_HINTS.get(errcode) if errcode is not None else None
        text = f"WeCom {path or 'call'} failed: errcode={errcode} {errmsg}"
        if hint:
            text += f" — {hint}"
        super().__init__(text)

    def as_dict(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "errmsg": self.errmsg, "path": self.path}


class WeComTransientError(WeComError):
    """Retry later with backoff: busy, network, 5xx."""

    transient = True


class WeComRateLimited(WeComTransientError):
    """45009 / 45033, or our own client-side limit: back off, then retry."""


class WeComPermanentError(WeComError):
    """No retry can fix it; the message says what to change."""


class WeComTokenError(WeComPermanentError):
    """The access token was refused even after a refetch."""


class WeComRelationGone(WeComPermanentError):
    """84061: the customer is no longer a contact of that staff member."""


TRANSIENT_ERRORS: tuple[type[Exception], ...] = (WeComTransientError,)


def classify(errcode: int, errmsg: str, *, path: str) -> WeComError:
    if errcode in (45009, 45033):
        return WeComRateLimited(errcode, errmsg, path=path)
    if errcode in TRANSIENT_CODES:
        return WeComTransientError(errcode, errmsg, path=path)
    if errcode == 84061:
        return WeComRelationGone(errcode, errmsg, path=path)
    if errcode in TOKEN_CODES:
        return WeComTokenError(errcode, errmsg, path=path)
    return WeComPermanentError(errcode, errmsg, path=path)
