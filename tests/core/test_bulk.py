"""Rows and statements sent in one round trip (apps.core.bulk): what goes in comes back
exactly, a failing statement writes nothing, and round trips are what CaptureQueriesContext
counts."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.bulk import Statement, array_param, insert_rows, new_id, run_statements
from apps.usage.models import UsageEvent
from tests.usage.world import Billing

AWKWARD_TEXTS = [
    'a "quoted" word',
    "back\\slash and \\\\ two",
    "comma, {braces}, (parens)",
    "NULL",
    "",
    " leading and trailing spaces ",
    "naïve café ☕ 𝄞",
    "line\nbreak\ttab",
    None,
]


def _round_trip(values, db_type):
    (rows,) = run_statements([Statement(f"SELECT unnest(%s::{db_type}[])", [array_param(values, db_type)])])
    return [row[0] for row in rows]


@pytest.mark.django_db
def test_text_arrays_keep_every_character():
    assert _round_trip(AWKWARD_TEXTS, "varchar") == AWKWARD_TEXTS
    assert _round_trip(AWKWARD_TEXTS, "text") == AWKWARD_TEXTS


@pytest.mark.django_db
def test_number_id_and_time_arrays_keep_their_values():
    amounts = [Decimal("0.0000015"), Decimal("1E-7"), Decimal("-12345678901234.123456789012"), Decimal("0"), None]
    assert _round_trip(amounts, "numeric") == amounts
    ids = [uuid.uuid4(), None, uuid.uuid4()]
    assert _round_trip(ids, "uuid") == ids
    moments = [
        datetime(2026, 11, 22, 17, 44, 52, 652518, tzinfo=UTC),
        datetime(2026, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
    ]
    assert _round_trip(moments, "timestamp with time zone") == moments
    assert _round_trip([3, None, -1], "integer") == [3, None, -1]


def test_an_unknown_column_type_is_refused():
    with pytest.raises(ValueError, match="no array encoding"):
        array_param([True], "boolean")


def test_new_ids_are_random_version_4_uuids():
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def _event_row(merchant, customer, subscription, key, metadata):
    now = datetime.now(UTC)
    return (
        new_id(),
        now,
        now,
        merchant.id,
        key,
        "hash",
        customer.id,
        subscription.id,
        now,
        "USDC",
        Decimal("0"),
        Decimal("0"),
        Decimal("0"),
        metadata,
        "",
    )


EVENT_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "merchant_id",
    "idempotency_key",
    "request_hash",
    "customer_id",
    "subscription_id",
    "timestamp",
    "currency",
    "amount",
    "commission_amount",
    "owner_revenue_amount",
    "metadata",
    "refund_reason",
)


@pytest.mark.django_db(transaction=True)
def test_inserted_rows_read_back_exactly_and_a_failure_writes_nothing(merchant):
    billing = Billing(merchant)
    customer, subscription = billing.customer, billing.subscription
    metadata = {"region": 'eu "west"', "nested": {"list": [1, "two", None], "back\\slash": True}}
    statement = insert_rows(UsageEvent, EVENT_COLUMNS, [_event_row(merchant, customer, subscription, "k1", metadata)])
    run_statements([statement])
    stored = UsageEvent.objects.get(merchant=merchant, idempotency_key="k1")
    assert stored.metadata == metadata

    # Outside a transaction the statements of one round trip still stand or fall together:
    # the second row is fine, the third repeats a key, and none of the three is written.
    rows = [
        insert_rows(UsageEvent, EVENT_COLUMNS, [_event_row(merchant, customer, subscription, "k2", {})]),
        insert_rows(UsageEvent, EVENT_COLUMNS, [_event_row(merchant, customer, subscription, "k1", {})]),
    ]
    with pytest.raises(IntegrityError, match="usage_event_unique_idempotency_key"):
        run_statements(rows)
    assert not UsageEvent.objects.filter(merchant=merchant, idempotency_key="k2").exists()
    # and the connection is usable afterwards
    assert UsageEvent.objects.filter(merchant=merchant).count() == 1


@pytest.mark.django_db
def test_an_error_inside_a_transaction_rolls_back_what_came_before(merchant):
    billing = Billing(merchant)
    customer, subscription = billing.customer, billing.subscription
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageEvent.objects.filter(merchant=merchant).count()
        run_statements(
            [
                insert_rows(UsageEvent, EVENT_COLUMNS, [_event_row(merchant, customer, subscription, "t1", {})]),
                insert_rows(UsageEvent, EVENT_COLUMNS, [_event_row(merchant, customer, subscription, "t1", {})]),
            ]
        )
    assert not UsageEvent.objects.filter(merchant=merchant).exists()


@pytest.mark.django_db
def test_one_round_trip_is_one_captured_query():
    with CaptureQueriesContext(connection) as queries:
        results = run_statements([Statement("SELECT 1"), Statement("SELECT %s::int + 1", [1])])
    assert results == [[(1,)], [(2,)]]
    assert len(queries) == 1


@pytest.mark.django_db(transaction=True)
def test_reports_go_on_after_a_migration_changes_a_prepared_statements_result(api):
    """A schema change made elsewhere (a deploy's migration) invalidates the statements this
    connection prepared; the next reports prepare them again instead of failing."""
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("10")
    batch = {"events": [billing.event(f"before{i}", metric) for i in range(2)]}
    assert api.post("/v0/usage", billing.event("before", metric)).status_code == 201
    assert api.post("/v0/usage/batch", batch).status_code == 201

    from django.db import connections

    other = connections.create_connection("default")  # a second session, as a deploy's migrate
    try:
        with other.cursor() as cursor:
            cursor.execute("ALTER TABLE usage_usageevent ALTER COLUMN idempotency_key TYPE varchar(300)")
        assert api.post("/v0/usage", billing.event("after", metric)).status_code == 201
        batch = {"events": [billing.event(f"after{i}", metric) for i in range(2)]}
        assert api.post("/v0/usage/batch", batch).status_code == 201
    finally:
        with other.cursor() as cursor:
            cursor.execute("ALTER TABLE usage_usageevent ALTER COLUMN idempotency_key TYPE varchar(255)")
        other.close()


@pytest.mark.django_db
def test_a_value_longer_than_its_column_is_refused_not_cut(merchant):
    from django.db import DataError

    billing = Billing(merchant)
    row = _event_row(merchant, billing.customer, billing.subscription, "k" * 300, {})
    with pytest.raises(DataError, match="too long"), transaction.atomic():
        run_statements([insert_rows(UsageEvent, EVENT_COLUMNS, [row])])
    assert not UsageEvent.objects.filter(merchant=merchant).exists()


def test_a_nul_character_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="NUL"):
        run_statements([Statement("SELECT %s::text", ["a\x00b"])])


@pytest.mark.django_db
def test_columns_the_server_generates_get_a_fresh_value_per_row(merchant):
    billing = Billing(merchant)
    customer, subscription = billing.customer, billing.subscription
    rows = [_event_row(merchant, customer, subscription, key, {})[1:] for key in ("g1", "g2", "g3")]
    run_statements([insert_rows(UsageEvent, EVENT_COLUMNS[1:], rows, generated={"id": "gen_random_uuid()"})])
    ids = set(UsageEvent.objects.filter(merchant=merchant).values_list("id", flat=True))
    assert len(ids) == 3 and all(i.version == 4 for i in ids)
