from apps.payments.services.adjustments import adjustment_create
from apps.payments.services.receive import (
    Arrival,
    Received,
    amount_due,
    payment_attempt_fail,
    payment_attempt_start,
    payment_from_wallet,
    payment_receive,
    payment_session_pay_test,
    payments_from_wallet,
)
from apps.payments.services.refunds import Refunded, RefundUndone, payment_dispute, payment_refund, payment_refund_fail
from apps.payments.services.sessions import (
    payment_session_create,
    payment_session_expire_due,
    payment_sessions_create,
    payment_sessions_expire,
    topup_session_create,
)

__all__ = [
    "Arrival",
    "Received",
    "Refunded",
    "adjustment_create",
    "amount_due",
    "payment_attempt_fail",
    "payment_attempt_start",
    "payment_dispute",
    "payment_from_wallet",
    "payment_receive",
    "payment_refund",
    "payment_refund_fail",
    "RefundUndone",
    "payment_session_create",
    "payment_session_expire_due",
    "payment_session_pay_test",
    "payment_sessions_create",
    "payment_sessions_expire",
    "payments_from_wallet",
    "topup_session_create",
]
