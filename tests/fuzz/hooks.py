"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by tests/fuzz/test_schemathesis.py): an id
that schemathesis generates for a path parameter, a query filter or a body field is, more often
than not, swapped for one that exists in the seeded world (tests/fuzz/world.py writes them to
FUZZ_IDS_FILE), so that generated requests reach the services behind the 404s and the 422s."""

import copy
import json
import os
from functools import cache
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

# name of a path parameter, query parameter or body field -> the kind of id it holds
KINDS = {
    "customer_id": "customer",
    "customerId": "customer",
    "dispute_id": "dispute",
    "endpoint_id": "webhookEndpoint",
    "entitlement_id": "entitlement",
    "entitlementId": "entitlement",
    "event_id": "usageEvent",
    "usageEventId": "usageEvent",
    "invoice_id": "invoice",
    "invoiceId": "invoice",
    "key_id": "customerApiKey",
    "metric_id": "billableMetric",
    "billableMetricId": "billableMetric",
    "plan_id": "plan",
    "planId": "plan",
    "price_id": "price",
    "priceId": "price",
    "product_id": "product",
    "productId": "product",
    "session_id": "paymentSession",
    "subscription_id": "subscription",
    "subscriptionId": "subscription",
    "merchantId": "merchant",
    "apiKey": "customerApiKeySecret",
}
LIST_KINDS = {"prices": "price"}


@cache
def known() -> dict[str, list[str]]:
    path = os.environ.get("FUZZ_IDS_FILE")
    return json.loads(Path(path).read_text()) if path else {}


def slots(node, path=()):
    """(path, kind, value) of every field of `node` that holds an id of a known kind."""
    if isinstance(node, dict):
        for key, value in node.items():
            kind = KINDS.get(key)
            if kind and isinstance(value, str) and known().get(kind):
                yield (*path, key), kind
            elif key in LIST_KINDS and isinstance(value, list) and known().get(LIST_KINDS[key]):
                for index, item in enumerate(value):
                    if isinstance(item, str):
                        yield (*path, key, index), LIST_KINDS[key]
            else:
                yield from slots(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from slots(item, (*path, index))


def with_known_ids(node):
    """A strategy of `node` with each id field either as generated or one of the known ids."""
    found = list(slots(node))
    if not found:
        return st.just(node)

    def apply(picks):
        result = copy.deepcopy(node)
        for (path, _), pick in zip(found, picks, strict=True):
            target = result
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = pick
        return result

    originals = []
    for path, _ in found:
        value = node
        for step in path:
            value = value[step]
        originals.append(value)
    choices = [
        st.sampled_from([*known()[kind], original]) for (_, kind), original in zip(found, originals, strict=True)
    ]
    return st.tuples(*choices).map(apply)


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    return with_known_ids(path_parameters or {})


@schemathesis.hook
def flatmap_query(context, query):
    return with_known_ids(query) if query else st.just(query)


@schemathesis.hook
def flatmap_body(context, body):
    return with_known_ids(body) if isinstance(body, dict | list) else st.just(body)
