"""The checkout card script's watch of a payment in flight (static/js/checkout-card.js), run in
node against a stubbed page and server (tests/checkout/card_js_harness.js): it asks at most 60
times, never twice without a pause after the first, waits as long as a 429 says, stops at a
refusal the server means (4xx) and shows it, and ends on a payment charged after its link stopped
taking payments instead of asking forever."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

NODE = shutil.which("node")
SCRIPT = Path(settings.BASE_DIR) / "static" / "js" / "checkout-card.js"
HARNESS = Path(__file__).with_name("card_js_harness.js")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is missing (make anvil installs npm's packages with it)")


def run(scenario: str) -> dict:
    done = subprocess.run([NODE, str(HARNESS), str(SCRIPT), scenario], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_payment_still_in_flight_is_asked_for_60_times_five_seconds_apart_then_the_page_says_so():
    seen = run("in_flight")
    assert seen["fetches"] == 60 and seen["delays"] == [0] + [5000] * 59 and seen["pending"] == 0
    assert seen["disabled"] is True and seen["error"] == ""
    assert seen["progress"].startswith("The payment is still being processed. Reload this page later")


def test_server_errors_are_asked_again_with_a_pause_and_a_429_waits_as_long_as_it_says():
    assert run("500")["delays"] == [0] + [5000] * 59
    limited = run("429")
    assert limited["fetches"] == 60 and limited["delays"] == [0] + [20000] * 59


def test_a_refusal_the_server_means_ends_the_watch_and_is_shown_with_the_form_usable():
    seen = run("400")
    assert seen["fetches"] == 1 and seen["pending"] == 0
    assert seen["error"] == "paymentAttemptId must name a card attempt of this payment session."
    assert seen["disabled"] is False


def test_a_charge_made_after_the_link_stopped_taking_payments_ends_the_watch_saying_where_the_money_is():
    seen = run("expired")
    assert seen["fetches"] == 1 and seen["pending"] == 0 and seen["redirects"] == []
    assert (
        seen["progress"] == "Your payment was received and added to your balance; this link no longer takes payments."
    )
