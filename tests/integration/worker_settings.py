"""Settings of the Celery worker that the period-close tests start (never of the test process):
the test settings, plus

- the test-only app tests.integration.period_close_block, after the invoices app, so that its
  listener runs after the invoices app has written the period's draft (it does nothing unless
  the worker's environment names a block file);
- the worker's own queue as the default queue (CELERY_TASK_DEFAULT_QUEUE), so that the tasks
  that a task enqueues (advance_due_periods -> advance_periods) reach this worker and no other
  run's on the same Redis;
- the chain that a settlement test hands its worker (USDC_TEST_CHAINS from its environment), and
  the sandbox's Stripe that a card test hands it (STRIPE_TEST_*);
- a short expiry of kombu's lock around its sweep for unacknowledged messages: a worker killed
  by a test while it held that lock would otherwise keep the next worker from taking its task
  back for 5 minutes.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import CELERY_BROKER_TRANSPORT_OPTIONS, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.integration.period_close_block.PeriodCloseBlockConfig"]
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "unacked_mutex_expire": 5}
# The settlement tests hand their worker the chain they run (tests.settings blanks it otherwise).
USDC_TEST_CHAINS = os.environ.get("USDC_TEST_CHAINS", "")
# The card tests hand their worker the sandbox's Stripe (localstripe; tests.settings blanks it).
STRIPE_TEST_SECRET_KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
STRIPE_TEST_PUBLISHABLE_KEY = os.environ.get("STRIPE_TEST_PUBLISHABLE_KEY", "")
STRIPE_TEST_WEBHOOK_SECRET = os.environ.get("STRIPE_TEST_WEBHOOK_SECRET", "")
STRIPE_TEST_API_BASE = os.environ.get("STRIPE_TEST_API_BASE", "")
