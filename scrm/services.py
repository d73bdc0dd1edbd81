"""Writes that belong to no single app: the integration accounts (API clients) and their
DRF tokens. Keyword-only and typed like every service; views and commands call these."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from rest_framework.authtoken.models import Token

from scrm.roles import INTEGRATION_GROUP


@transaction.atomic
def api_client_create(*, username: str) -> tuple[User, Token]:
    """Create an integration user (group ``api_clients``) and its first token.

    The user gets an unusable password: an API client signs in with its token only, and
    the dashboard login refuses its role anyway.
    """
    username = username.strip()
    user_model = get_user_model()
    if not username:
        raise ValidationError({"username": _("A username is required.")})
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("A user with this username already exists.")})
    user = user_model(username=username)
    user.set_unusable_password()
    user.save()
    group, _created = Group.objects.get_or_create(name=INTEGRATION_GROUP)
    user.groups.add(group)
    token = Token.objects.create(user=user)
    return user, token


def _lock_api_client(user: User) -> User:
    # Locking the user row serialises two operators rotating the same client at once;
    # without it the second create would hit the token's one-per-user unique key.
    locked = (
        get_user_model()
        .objects.select_for_update()
        .filter(pk=user.pk, groups__name=INTEGRATION_GROUP)
        .first()
    )
    if locked is None:
        raise ValidationError(_("Only an API client's token can be rotated or revoked here."))
    return locked


@transaction.atomic
def api_token_rotate(*, user: User) -> Token:
    """Replace the client's token with a new one (or issue one if it had none).

    The old key stops working at once; DRF keeps one token per user.
    """
    locked = _lock_api_client(user)
    Token.objects.filter(user=locked).delete()
    return Token.objects.create(user=locked)


@transaction.atomic
def api_token_revoke(*, user: User) -> bool:
    """Delete the client's token; returns False when it had none. The account stays, so
    the client can be given a new token later by rotating."""
    locked = _lock_api_client(user)
    deleted, _detail = Token.objects.filter(user=locked).delete()
    return deleted > 0


@transaction.atomic
def api_token_issue(*, user: User, rotate: bool = False) -> str:
    """The user's API token key, created when missing; ``rotate`` replaces the key, so
    the old one stops working at once.

    Unlike :func:`api_token_rotate` (the dashboard's, for API clients only) this serves
    any active user, for the ``create_api_token`` command run by an administrator.
    """
    if rotate:
        Token.objects.filter(user=user).delete()
    token, _created = Token.objects.get_or_create(user=user)
    return str(token.key)
