"""invoice.* events, in the transaction of the change, with the invoice in its API shape.

An invoice written or changed set-wise (the period close) carries the lines written with it
(`invoice.written_lines`); their shape is computed once and reused by each of its events."""

from apps.webhooks.outbox import publish, publish_many


def _lines_data(invoice) -> list[dict]:
    from apps.invoices.serializers import invoice_lines_data

    cached = getattr(invoice, "lines_data", None)
    if cached is None:
        cached = invoice.lines_data = invoice_lines_data(invoice, getattr(invoice, "written_lines", None))
    return cached


def invoice_publish(invoice, type: str) -> None:
    from apps.invoices.serializers import invoice_data

    data = invoice_data(invoice, lines_data=_lines_data(invoice))
    publish(merchant=invoice.merchant, type=type, data=data, updated_at=invoice.updated_at)


def invoices_publish(invoices, type: str) -> None:
    """`type` for each of these invoices, in one insert."""
    from apps.invoices.serializers import invoice_data

    publish_many(
        [(invoice.merchant, type, invoice_data(invoice, lines_data=_lines_data(invoice))) for invoice in invoices]
    )
