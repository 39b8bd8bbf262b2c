"""Saved cards: one row per Stripe PaymentMethod, the customer's first one its default."""

import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.cards.models import SavedCard
from apps.core.errors import NotFound
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


def saved_card_list(*, customer):
    """The customer's saved cards (not removed): the default first, then newest first."""
    return SavedCard.objects.filter(customer=customer, merchant=customer.merchant, removed_at__isnull=True).order_by(
        "-is_default", "-created_at", "-id"
    )


def saved_card_default(*, customer) -> SavedCard | None:
    """The card charged off-session (invoices, auto-recharge), if the customer has one."""
    return (
        SavedCard.objects.select_related("merchant", "customer")
        .filter(customer=customer, merchant=customer.merchant, is_default=True, removed_at__isnull=True)
        .first()
    )


def saved_card_get(*, customer, card_id) -> SavedCard:
    """One saved card of the customer by its id (the PaymentMethod's pm_... id, or the row's
    UUID); NotFound for another customer's, a removed one, or an unknown id."""
    queryset = saved_card_list(customer=customer)
    card = queryset.filter(stripe_payment_method_id=str(card_id)).first()
    if card is None:
        try:
            card = queryset.filter(pk=uuid.UUID(str(card_id))).first()
        except ValueError:
            card = None
    if card is None:
        raise NotFound(f"No saved card {card_id} for customer {customer.id}.", code="PAYMENT_METHOD_NOT_FOUND")
    return card


def saved_card_was_removed(*, customer, card_id) -> bool:
    """Whether this id (pm_... or the row's UUID) names a card of the customer's that was removed."""
    removed = SavedCard.objects.filter(customer=customer, merchant=customer.merchant, removed_at__isnull=False)
    if removed.filter(stripe_payment_method_id=str(card_id)).exists():
        return True
    try:
        return removed.filter(pk=uuid.UUID(str(card_id))).exists()
    except ValueError:
        return False


def _lock_cards(customer) -> list[SavedCard]:
    """The customer's live cards, locked in primary-key order (one writer at a time)."""
    return list(
        SavedCard.objects.select_for_update()
        .filter(customer=customer, merchant=customer.merchant, removed_at__isnull=True)
        .order_by("pk")
    )


def saved_card_set_default(*, customer, card_id) -> SavedCard:
    """Make this saved card the customer's default (the one charged off-session)."""
    with transaction.atomic():
        card = saved_card_get(customer=customer, card_id=card_id)
        cards = _lock_cards(customer)
        SavedCard.objects.filter(pk__in=[c.pk for c in cards if c.is_default and c.pk != card.pk]).update(
            is_default=False, updated_at=timezone.now()
        )
        SavedCard.objects.filter(pk=card.pk).update(is_default=True, updated_at=timezone.now())
        card.refresh_from_db()
    return card


def saved_card_mark_removed(*, customer, card_id) -> SavedCard:
    """Mark the card removed (it is never charged again); the default moves to the newest card
    left, or to none. The caller detaches it from the Stripe customer after the commit."""
    with transaction.atomic():
        card = saved_card_get(customer=customer, card_id=card_id)
        cards = _lock_cards(customer)
        now = timezone.now()
        SavedCard.objects.filter(pk=card.pk).update(removed_at=now, is_default=False, updated_at=now)
        if card.is_default:
            remaining = sorted((c for c in cards if c.pk != card.pk), key=lambda c: (c.created_at, c.pk), reverse=True)
            if remaining:
                SavedCard.objects.filter(pk=remaining[0].pk).update(is_default=True, updated_at=now)
        card.refresh_from_db()
    return card
