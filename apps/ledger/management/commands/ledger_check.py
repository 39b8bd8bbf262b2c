from django.core.management.base import BaseCommand, CommandError

from apps.ledger.selectors import ledger_check


class Command(BaseCommand):
    help = (
        "Recompute every balance from the ledger entries and check each mode (live, sandbox) on its own: "
        "its accounts sum to zero and no transaction reaches the other mode (exit 1 on any problem)."
    )

    def handle(self, *args, **options):
        problems = ledger_check()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"ledger_check: {len(problems)} problem(s)")
        self.stdout.write(
            "ledger_check: every balance matches its entries; every transaction sums to zero; "
            "live and sandbox each sum to zero and never meet."
        )
