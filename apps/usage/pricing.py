"""Rules shared by charging and refunds about how instant prices count usage."""

from apps.catalog.models import PaymentTerm, Price, PriceModel


def needs_counter(price: Price) -> bool:
    """Whether charging this price needs the period's running total of units (graduated
    tiers continue from it; free units are used up by it)."""
    return price.payment_term == PaymentTerm.INSTANT and (price.model == PriceModel.GRADUATED or price.free_units > 0)
