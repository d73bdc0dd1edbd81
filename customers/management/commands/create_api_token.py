"""Print a user's REST API token, for scripts: ``KEY=$(manage.py create_api_token mall)``.

Only the key goes to stdout; notes go to stderr.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scrm.roles import role_of
from scrm.services import api_client_create, api_token_issue


class Command(BaseCommand):
    help = (
        "Print USERNAME's API token (created if missing). --create makes an unknown user "
        "an API client (group api_clients); --rotate replaces the token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--create",
            action="store_true",
            help="Create the user as an API client (group api_clients) if it does not exist.",
        )
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Replace the token with a new one; the old key stops working at once.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"].strip()
        user_model = get_user_model()
        user = user_model._default_manager.filter(username=username).first()
        if user is None:
            if not options["create"]:
                raise CommandError(
                    f"No user named {username!r}. Pass --create to create it as an API client."
                )
            try:
                UnicodeUsernameValidator()(username)
                _created, token = api_client_create(username=username)
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from None
            self.stderr.write(f"Created API client {username!r} (group api_clients).")
            self.stdout.write(token.key)
            return
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; a token would not authenticate.")
        if role_of(user) is None:
            self.stderr.write(
                f"Warning: {username!r} has no role (not staff, not in api_clients): the token "
                "authenticates but every API call will answer 403."
            )
        self.stdout.write(api_token_issue(user=user, rotate=options["rotate"]))
