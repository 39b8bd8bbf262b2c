"""Where invoicing plugs into the apps below it (none of them imports it)."""


def register() -> None:
    from apps.invoices.purposes import register_purposes
    from apps.invoices.services.collection import on_wallet_credited
    from apps.invoices.services.invoices import (
        on_activation_expired,
        on_activation_paid,
        on_periods_closed,
        on_periods_ended,
        on_subscription_created,
    )
    from apps.invoices.services.proration import on_period_cut
    from apps.invoices.services.refunds import on_payment_refund_failed, on_payment_refunded
    from apps.payments import registry
    from apps.subscriptions import hooks as subscription_hooks

    register_purposes()
    registry.on_wallet_credited(on_wallet_credited)
    registry.on_payment_refunded(on_payment_refunded)
    registry.on_payment_refund_failed(on_payment_refund_failed)
    subscription_hooks.on_periods_ended(on_periods_ended)
    subscription_hooks.on_periods_closed(on_periods_closed)
    subscription_hooks.on_period_cut(on_period_cut)
    subscription_hooks.on_subscription_created(on_subscription_created)
    subscription_hooks.on_activation_paid(on_activation_paid)
    subscription_hooks.on_activation_expired(on_activation_expired)
