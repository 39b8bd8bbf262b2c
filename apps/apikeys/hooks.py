"""Where the API-keys app plugs into the apps below it (none of them imports it)."""


def register() -> None:
    from apps.apikeys.purposes import register_purposes
    from apps.apikeys.services import subscription_changed, switch_to_free
    from apps.invoices.services.dunning import on_dunning_ended
    from apps.subscriptions import hooks as subscription_hooks

    register_purposes()
    subscription_hooks.on_subscription_changed(subscription_changed)
    subscription_hooks.on_termination_requested(switch_to_free)
    # dunning's end on a paid tier: back to free instead of terminated
    on_dunning_ended(lambda invoice: invoice.subscription is not None and switch_to_free(invoice.subscription))
