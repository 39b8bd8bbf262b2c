from apps.subscriptions.services.payment_sessions import (
    payment_session_create,
    payment_session_expire_due,
    payment_session_pay,
    topup_session_create,
)
from apps.subscriptions.services.subscriptions import subscription_create, subscription_terminate

__all__ = [
    "payment_session_create",
    "payment_session_expire_due",
    "payment_session_pay",
    "subscription_create",
    "subscription_terminate",
    "topup_session_create",
]
