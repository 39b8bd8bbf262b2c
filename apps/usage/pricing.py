"""Rules shared by charging and refunds about how instant prices count usage."""

from apps.catalog.models import PaymentTerm, Price, PriceModel

# Models whose instant charges continue from the period's running total.
RUNNING_TOTAL_MODELS = (PriceModel.GRADUATED, PriceModel.PACKAGE)


def needs_counter(price: Price) -> bool:
    """Whether charging this price needs the period's running total of units (graduated
    tiers and started packages continue from it; free units are used up by it)."""
    return price.payment_term == PaymentTerm.INSTANT and (price.model in RUNNING_TOTAL_MODELS or price.free_units > 0)
