"""invoice.* events, in the transaction of the change, with the invoice in its API shape."""

from apps.webhooks.outbox import publish


def invoice_publish(invoice, type: str) -> None:
    from apps.invoices.serializers import invoice_data

    publish(merchant=invoice.merchant, type=type, data=invoice_data(invoice), updated_at=invoice.updated_at)
