from django.core.management.base import BaseCommand, CommandError

from apps.ledger.selectors import ledger_check


class Command(BaseCommand):
    help = "Recompute every balance from the ledger entries and report any difference (exit 1 if any)."

    def handle(self, *args, **options):
        problems = ledger_check()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"ledger_check: {len(problems)} problem(s)")
        self.stdout.write("ledger_check: every balance matches its entries; every transaction sums to zero.")
