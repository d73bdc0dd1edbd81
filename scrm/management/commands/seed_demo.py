"""``manage.py seed_demo``: fill the database with the demo brand (see ``scrm.demo``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scrm.demo import DEFAULT_CUSTOMERS, DEFAULT_SEED, DemoReport, demo_seed


class Command(BaseCommand):
    help = (
        "Seed the demo brand: stores, staff with logins, channels, tags, customers, follows, "
        "orders, activities, notes and an API client. Idempotent: run it again freely."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
        parser.add_argument(
            "--customers", type=int, default=DEFAULT_CUSTOMERS, help="how many customers"
        )
        parser.add_argument(
            "--allow-without-debug",
            action="store_true",
            help="seed even though DEBUG is off (the demo logins share a published password)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The demo logins' password is in the README: never on a real deployment by mistake.
        if not settings.DEBUG and not options["allow_without_debug"]:
            raise CommandError(
                "seed_demo creates logins with a published password, so it refuses to run "
                "with DEBUG off. Set DEBUG=1, or pass --allow-without-debug on a demo server."
            )
        if options["customers"] < 1:
            raise CommandError("--customers must be at least 1.")
        report = demo_seed(seed=options["seed"], customers=options["customers"])
        self._print(report)

    def _print(self, report: DemoReport) -> None:
        counts = ", ".join(f"{n:,} {name}" for name, n in report.counts.items())
        new = sum(report.created.values())
        self.stdout.write(
            self.style.SUCCESS(f"Demo data ready in {report.seconds:.1f} s ({new:,} rows new).")
        )
        self.stdout.write(f"  {counts}")
        anchor = timezone.localtime(report.anchor)
        self.stdout.write(f"  dated up to {anchor:%Y-%m-%d %H:%M %Z} (the first seed)")
        self.stdout.write("")
        self.stdout.write(f"Demo logins (password for all: {report.password}):")
        shown = [x for x in report.logins if x.role != "staff" or x.username.endswith("_clerk1")]
        for login in shown:
            where = f", {login.store}" if login.store else ""
            self.stdout.write(f"  {login.username:<14} {login.role}{where}")
        hidden = len(report.logins) - len(shown)
        if hidden:
            self.stdout.write(f"  ... and {hidden} more clerks (<city>_clerk2, _clerk3, ...)")
        self.stdout.write("")
        self.stdout.write(f"API client {report.api_username}, token: {report.api_token}")
        self.stdout.write(
            f'  curl -H "Authorization: Token {report.api_token}" '
            "http://127.0.0.1:8000/api/v1/customers/"
        )
