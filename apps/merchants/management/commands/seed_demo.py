"""Demo data for `make run`: an operator login, a demo merchant with a staff login,
and fresh live and sandbox keys (keys are shown once, so each run issues new ones
and revokes the previous run's)."""

from axes.utils import reset as axes_reset
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.core.secrets import random_token
from apps.merchants.models import ApiKey, Merchant, User
from apps.merchants.selectors import merchant_twins
from apps.merchants.services import api_key_create, api_key_revoke, merchant_create, merchant_staff_grant

DEMO_MERCHANT_EMAIL = "billing@demo-api.example"
DEMO_KEY_NAME = "make run demo key"


def seed_demo_merchant() -> Merchant:
    merchant = Merchant.objects.filter(contact_email=DEMO_MERCHANT_EMAIL, livemode=True).first()
    if merchant is None:
        merchant = merchant_create(name="Demo API Co", contact_email=DEMO_MERCHANT_EMAIL)
    return merchant


def seed_user(*, username: str, email: str, merchant: Merchant | None) -> tuple[User, str]:
    """A login with a new password (a staff login gets the merchant staff's permissions); a
    sign-in lockout of an earlier run is lifted, so the printed password works at once."""
    password = random_token(16)
    user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
    user.email = email
    user.is_staff = True
    user.is_superuser = merchant is None
    user.merchant = merchant
    user.set_password(password)
    user.save()
    if merchant is not None:
        merchant_staff_grant(user=user)
    axes_reset(username=username)
    return user, password


class Command(BaseCommand):
    help = "Create or refresh the demo merchant, logins and API keys, and print them."

    def add_arguments(self, parser):
        parser.add_argument("--port", default="8000")

    def handle(self, *args, port, **options):
        with transaction.atomic():
            merchant = seed_demo_merchant()
            live, sandbox = merchant_twins(merchant=merchant)
            for key in ApiKey.objects.filter(merchant__in=[live, sandbox], name=DEMO_KEY_NAME, revoked_at__isnull=True):
                api_key_revoke(key=key)
            _, live_secret = api_key_create(merchant=live, name=DEMO_KEY_NAME)
            _, test_secret = api_key_create(merchant=sandbox, name=DEMO_KEY_NAME)
            _, admin_password = seed_user(username="admin", email="admin@platform.example", merchant=None)
            _, staff_password = seed_user(username="demo", email="staff@demo-api.example", merchant=live)
        base = f"http://127.0.0.1:{port}"
        extra = []
        for seeder in self.extra_seeds():
            for line in seeder(live=live, sandbox=sandbox) or []:
                extra.append(line.replace("<BASE_URL>", base).replace("<SANDBOX_KEY>", test_secret))
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    f"  Admin (platform operator): {base}/admin/  user admin  password {admin_password}",
                    f"  Admin (merchant staff):    {base}/admin/  user demo   password {staff_password}",
                    f"  Merchant id:               {live.public_id}",
                    f"  Live key:                  {live_secret}",
                    f"  Sandbox key:               {test_secret}",
                    f"  API docs:                  {base}/v0/docs",
                    f"  Try:  curl -H 'Authorization: Bearer {test_secret}' {base}/v0/merchants/me",
                    *extra,
                    "=" * 72,
                    "",
                ]
            )
        )

    def extra_seeds(self):
        """Apps that add demo data (the catalog, ...) register their seeders here."""
        from apps.core.demo import demo_seeders

        return demo_seeders()
