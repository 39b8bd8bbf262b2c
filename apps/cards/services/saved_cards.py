"""Saved cards: one row per Stripe PaymentMethod, the customer's first one its default."""

from django.db import IntegrityError, transaction

from apps.cards.models import SavedCard
from apps.core.models import violated_constraint


def saved_card_record(*, customer, method_id: str, card: dict) -> SavedCard:
    """The saved card, once per PaymentMethod; the customer's first card is its default."""
    fields = {
        "brand": card.get("brand") or "",
        "last4": card.get("last4") or "",
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
    }
    for make_default in (True, False):
        if (
            make_default
            and SavedCard.objects.filter(customer=customer, is_default=True, removed_at__isnull=True).exists()
        ):
            continue
        try:
            with transaction.atomic():
                return SavedCard.objects.create(
                    merchant=customer.merchant,
                    customer=customer,
                    stripe_payment_method_id=method_id,
                    is_default=make_default,
                    **fields,
                )
        except IntegrityError as exc:
            constraint = violated_constraint(exc)
            if constraint == "saved_card_unique_payment_method":
                return SavedCard.objects.get(merchant=customer.merchant, stripe_payment_method_id=method_id)
            if constraint != "saved_card_one_default_per_customer":
                raise
            # another card became the default meanwhile: this one is saved beside it
    raise AssertionError("unreachable: a card that is not the default cannot collide on the default")
