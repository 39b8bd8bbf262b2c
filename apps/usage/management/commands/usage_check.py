from django.core.management.base import BaseCommand, CommandError

from apps.usage.selectors import usage_check


class Command(BaseCommand):
    help = "Report usage rows whose keys point at nothing and events whose lines do not sum to them (exit 1 if any)."

    def handle(self, *args, **options):
        problems = usage_check()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"usage_check: {len(problems)} problem(s)")
        self.stdout.write("usage_check: every usage row's keys exist; every event is the sum of its lines.")
