"""The payments app: payment sessions (from subscriptions) and adjustments (from the
ledger) move here with their tables, and sessions gain what the one payment service needs:
the amount paid so far, attempts (at most one in flight per session) and payments (one per
external reference). Sessions already paid get the payment and attempt that paid them."""

import uuid

import django.db.models.deletion
from django.db import migrations, models

import apps.core.fields

AMOUNT = apps.core.fields.AmountField
CURRENCIES = [("USDC", "USDC"), ("USD", "USD")]
SOURCES = {"test": "test", "stripe": "card"}


def record_payments_of_paid_sessions(apps, schema_editor):
    PaymentSession = apps.get_model("payments", "PaymentSession")
    PaymentAttempt = apps.get_model("payments", "PaymentAttempt")
    Payment = apps.get_model("payments", "Payment")
    paid = PaymentSession.objects.filter(status="paid").select_related("merchant")
    for session in paid.iterator():
        session.amount_paid = session.amount
        session.save(update_fields=["amount_paid"])
        if session.ledger_transaction_id is None:
            continue
        source = SOURCES.get(session.paid_source, "usdc" if session.paid_source.startswith("chain:") else "test")
        reference = f"test:{session.id}" if source == "test" else f"{session.paid_source}:{session.id}"
        attempt = PaymentAttempt.objects.create(
            merchant_id=session.merchant_id,
            session=session,
            source=source,
            status="succeeded",
            amount=session.amount,
            currency=session.currency,
            external_reference=reference,
            finished_at=session.paid_at,
        )
        Payment.objects.create(
            merchant_id=session.merchant_id,
            source=source,
            external_reference=reference,
            amount=session.amount,
            currency=session.currency,
            applied_amount=session.amount,
            customer_id=session.customer_id,
            wallet_id=session.wallet_id,
            session=session,
            attempt=attempt,
            ledger_transaction_id=session.ledger_transaction_id,
        )


def restore_paid_sources(apps, schema_editor):
    """Backwards: a session paid by one payment gets back its paid_source and ledger transaction
    (the columns this migration drops), before the payments and attempts are dropped."""
    PaymentSession = apps.get_model("payments", "PaymentSession")
    Payment = apps.get_model("payments", "Payment")
    clearing = {"card": "stripe", "test": "test"}
    for payment in Payment.objects.filter(session__status="paid").order_by("created_at").iterator():
        PaymentSession.objects.filter(pk=payment.session_id, ledger_transaction__isnull=True).update(
            paid_source=clearing.get(payment.source, payment.source),
            ledger_transaction_id=payment.ledger_transaction_id,
        )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("customers", "0002_initial"),
        ("ledger", "0008_move_adjustments"),
        ("merchants", "0001_initial"),
        ("subscriptions", "0003_move_payment_sessions"),
    ]

    operations = [
        # The models as they were, over their tables as they are.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PaymentSession",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "purpose",
                            models.CharField(
                                choices=[
                                    ("activation", "Activation"),
                                    ("top_up", "Top Up"),
                                    ("invoice", "Invoice"),
                                    ("setup", "Setup"),
                                ],
                                max_length=16,
                            ),
                        ),
                        (
                            "mode",
                            models.CharField(
                                choices=[("payment", "Payment"), ("setup", "Setup")], default="payment", max_length=16
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[("pending", "Pending"), ("paid", "Paid"), ("expired", "Expired")],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("amount", AMOUNT(decimal_places=12, max_digits=38)),
                        ("currency", models.CharField(choices=CURRENCIES, max_length=8)),
                        ("invoice_id", models.UUIDField(blank=True, null=True)),
                        ("expires_at", models.DateTimeField()),
                        ("paid_at", models.DateTimeField(blank=True, null=True)),
                        ("paid_source", models.CharField(blank=True, max_length=64)),
                        ("success_url", models.URLField(blank=True, max_length=2000)),
                        ("cancel_url", models.URLField(blank=True, max_length=2000)),
                        (
                            "customer",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="payment_sessions",
                                to="customers.customer",
                            ),
                        ),
                        (
                            "ledger_transaction",
                            models.OneToOneField(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="ledger.ledgertransaction",
                            ),
                        ),
                        (
                            "merchant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="merchants.merchant"
                            ),
                        ),
                        (
                            "wallet",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="payment_sessions",
                                to="ledger.wallet",
                            ),
                        ),
                        (
                            "subscription",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="payment_sessions",
                                to="subscriptions.subscription",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "subscriptions_paymentsession",
                        "indexes": [models.Index(fields=["status", "expires_at"], name="payment_session_status_expiry")],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("amount__gte", 0)), name="payment_session_amount_not_negative"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Adjustment",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("amount", AMOUNT(decimal_places=12, max_digits=38)),
                        ("currency", models.CharField(choices=CURRENCIES, max_length=8)),
                        ("reason", models.CharField(max_length=500)),
                        (
                            "actor",
                            models.CharField(
                                blank=True, help_text="Who made it: the API, or an admin user.", max_length=200
                            ),
                        ),
                        (
                            "customer",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="adjustments",
                                to="customers.customer",
                            ),
                        ),
                        (
                            "ledger_transaction",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="ledger.ledgertransaction",
                            ),
                        ),
                        (
                            "merchant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="merchants.merchant"
                            ),
                        ),
                        (
                            "wallet",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="adjustments",
                                to="ledger.wallet",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "ledger_adjustment",
                        "indexes": [models.Index(fields=["customer", "created_at"], name="adjustment_customer_created")],
                    },
                ),
            ]
        ),
        migrations.AlterModelTable(name="paymentsession", table=None),
        migrations.AlterModelTable(name="adjustment", table=None),
        migrations.AlterField(
            model_name="paymentsession",
            name="purpose",
            field=models.CharField(
                choices=[
                    ("activation", "Activation"),
                    ("top_up", "Top Up"),
                    ("invoice", "Invoice"),
                    ("setup", "Setup"),
                    ("tier_change", "Tier Change"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="paymentsession",
            name="amount_paid",
            field=AMOUNT(decimal_places=12, default=0, max_digits=38),
        ),
        migrations.AddField(
            model_name="adjustment",
            name="idempotency_key",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AddConstraint(
            model_name="adjustment",
            constraint=models.UniqueConstraint(
                fields=("merchant", "idempotency_key"), name="adjustment_unique_idempotency_key"
            ),
        ),
        migrations.CreateModel(
            name='PaymentAttempt',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('source', models.CharField(choices=[('card', 'Card'), ('usdc', 'Usdc'), ('test', 'Test'), ('wallet', 'Wallet')], max_length=16)),
                ('status', models.CharField(choices=[('in_flight', 'In Flight'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='in_flight', max_length=16)),
                ('amount', AMOUNT(decimal_places=12, help_text='What this attempt asked for.', max_digits=38)),
                ('currency', models.CharField(choices=[('USDC', 'USDC'), ('USD', 'USD')], max_length=8)),
                ('external_reference', models.CharField(blank=True, max_length=300)),
                ('failure_reason', models.CharField(blank=True, max_length=500)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant')),
                ('session', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='attempts', to='payments.paymentsession')),
            ],
        ),
        migrations.CreateModel(
            name='Payment',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('source', models.CharField(choices=[('card', 'Card'), ('usdc', 'Usdc'), ('test', 'Test'), ('wallet', 'Wallet')], max_length=16)),
                ('external_reference', models.CharField(max_length=300)),
                ('status', models.CharField(choices=[('succeeded', 'Succeeded'), ('refunded', 'Refunded'), ('disputed', 'Disputed')], default='succeeded', max_length=16)),
                ('amount', AMOUNT(decimal_places=12, max_digits=38)),
                ('currency', models.CharField(choices=[('USDC', 'USDC'), ('USD', 'USD')], max_length=8)),
                ('applied_amount', AMOUNT(decimal_places=12, default=0, help_text="What went to the session's target; the rest stays free.", max_digits=38)),
                ('customer', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='payments', to='customers.customer')),
                ('ledger_transaction', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ledger.ledgertransaction')),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant')),
                ('wallet', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='payments', to='ledger.wallet')),
                ('attempt', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='payment', to='payments.paymentattempt')),
                ('session', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='payments', to='payments.paymentsession')),
            ],
        ),
        migrations.AddConstraint(
            model_name='paymentattempt',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'in_flight')), fields=('merchant', 'session'), name='payment_attempt_one_in_flight_per_session'),
        ),
        migrations.AddIndex(
            model_name='payment',
            index=models.Index(fields=['merchant', 'created_at'], name='payment_merchant_created'),
        ),
        migrations.AddConstraint(
            model_name='payment',
            constraint=models.UniqueConstraint(fields=('source', 'external_reference'), name='payment_unique_external_reference'),
        ),
        migrations.AddConstraint(
            model_name='payment',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='payment_amount_positive'),
        ),
        migrations.RunPython(record_payments_of_paid_sessions, restore_paid_sources),
        migrations.RemoveField(model_name="paymentsession", name="paid_source"),
        migrations.RemoveField(model_name="paymentsession", name="ledger_transaction"),
        migrations.AddConstraint(
            model_name="paymentsession",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_paid__gte", 0), ("amount_paid__lte", models.F("amount"))),
                name="payment_session_paid_within_amount",
            ),
        ),
    ]
