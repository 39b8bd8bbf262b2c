from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.usage.selectors import usage_check


class Command(BaseCommand):
    help = "Report usage rows whose keys point at nothing and events whose lines do not sum to them (exit 1 if any)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=None, help="only rows created in the last N days (default: all rows)"
        )

    def handle(self, *args, days=None, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more")
        since = timezone.now() - timedelta(days=days) if days is not None else None
        problems = usage_check(since=since)
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"usage_check: {len(problems)} problem(s)")
        self.stdout.write("usage_check: every usage row's keys exist; every event is the sum of its lines.")
