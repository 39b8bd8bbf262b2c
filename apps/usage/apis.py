"""The usage endpoints of /v0."""

import datetime as dt

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from apps.catalog.selectors import billable_metric_get
from apps.core.api import ApiView, check_merchant_id, choice_param, plain_json_post, uuid_param
from apps.core.errors import FieldError
from apps.core.inputs import StrictCharField, StrictInputSerializer
from apps.core.schema import api_errors
from apps.merchants.authentication import merchant_for_request
from apps.subscriptions.selectors import period_invoice_ids
from apps.usage.aggregation import MAX_WINDOWS, TooManyWindows, WindowSize, aggregate, format_value
from apps.usage.models import Dispute
from apps.usage.selectors import dispute_get, dispute_list, usage_event_get, usage_event_list
from apps.usage.serializers import (
    DisputeSerializer,
    UsageBatchResultSchema,
    UsageEventDetailSchema,
    UsageEventSchema,
    usage_event_detail,
)
from apps.usage.services import (
    MAX_BATCH_EVENTS,
    dispute_accept,
    dispute_decline,
    dispute_open,
    usage_record_batch,
    usage_record_combined,
    usage_refund,
)

# --- meter: GET /v0/billableMetrics/{id}/meter ------------------------------------------------

METER_DEFAULT_RANGE = dt.timedelta(days=30)
METER_MAX_HOURLY_RANGE = dt.timedelta(days=366)

METER_RESPONSE = inline_serializer(
    name="Meter",
    fields={
        "object": serializers.CharField(default="meter"),
        "billableMetricId": serializers.UUIDField(),
        "aggregation": serializers.CharField(),
        "from": serializers.DateTimeField(),
        "to": serializers.DateTimeField(),
        "windowSize": serializers.ChoiceField(choices=WindowSize.CHOICES, allow_null=True),
        "totalValue": serializers.CharField(
            allow_null=True, help_text="A decimal string; null for AVG/MIN/MAX/LATEST without usage."
        ),
        "windowedValues": inline_serializer(
            name="MeterWindow",
            many=True,
            fields={
                "windowStart": serializers.DateTimeField(),
                "windowEnd": serializers.DateTimeField(),
                "value": serializers.CharField(allow_null=True),
            },
        ),
        "groupedValues": inline_serializer(
            name="MeterGroup",
            many=True,
            fields={
                "group": serializers.DictField(child=serializers.CharField(allow_null=True)),
                "value": serializers.CharField(allow_null=True),
            },
        ),
    },
)


class MeterInput(serializers.Serializer):
    """The query of GET /v0/billableMetrics/{id}/meter."""

    customerId = serializers.UUIDField(
        required=False, error_messages={"invalid": 'must be an id (a UUID); got "{value}".'}
    )
    # `from` is a Python keyword: declared through the class namespace.
    locals()["from"] = serializers.DateTimeField(required=False)
    to = serializers.DateTimeField(required=False)
    windowSize = serializers.ChoiceField(
        choices=WindowSize.CHOICES,
        required=False,
        error_messages={"invalid_choice": f'must be one of {", ".join(WindowSize.CHOICES)}; got "{{input}}".'},
    )
    groupBy = serializers.CharField(required=False)

    def validate(self, data):
        end = data.get("to") or timezone.now()
        start = data.get("from") or end - METER_DEFAULT_RANGE
        if start >= end:
            raise FieldError("from", f"must be before `to` ({end.isoformat()}).", code="INVALID_RANGE")
        window = data.get("windowSize")
        if window == WindowSize.HOUR and end - start > METER_MAX_HOURLY_RANGE:
            raise FieldError(
                "windowSize",
                f"HOUR windows cover at most {METER_MAX_HOURLY_RANGE.days} days; use DAY or MONTH, or a shorter range.",
                code="RANGE_TOO_LONG",
            )
        keys = []
        for key in (data.get("groupBy") or "").split(","):
            key = key.strip()
            if key and key not in keys:
                keys.append(key)
        return {
            "customer_id": data.get("customerId"),
            "start": start,
            "end": end,
            "window": window,
            "group_by": keys,
        }


class BillableMetricMeterApi(ApiView):
    InputSerializer = MeterInput

    @api_errors({403: "MERCHANT_MISMATCH: the query's merchantId is not the merchant of the API key"})
    @extend_schema(
        operation_id="billable_metrics_meter",
        parameters=[
            OpenApiParameter("customerId", OpenApiTypes.UUID, description="Only this customer's usage."),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Inclusive; default 30 days before `to`."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Exclusive; default now."),
            OpenApiParameter(
                "windowSize",
                OpenApiTypes.STR,
                enum=list(WindowSize.CHOICES),
                description="UTC-aligned windows; the first and last are clipped to [from, to).",
            ),
            OpenApiParameter(
                "groupBy", OpenApiTypes.STR, description="Comma-separated keys among the metric's groupBy."
            ),
        ],
        responses=METER_RESPONSE,
        tags=["catalog"],
    )
    def get(self, request, metric_id):
        params = {key: value for key, value in request.query_params.items() if value != ""}
        # (the query is no body: its merchantId is checked here, as ApiView checks a body's)
        check_merchant_id(request.merchant, params.pop("merchantId", None))
        serializer = self.InputSerializer(data=params)
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        metric = billable_metric_get(merchant=request.merchant, id=metric_id)
        for key in query["group_by"]:
            if key not in metric.group_by:
                allowed = ", ".join(metric.group_by) or "none"
                raise FieldError(
                    "groupBy",
                    f"{key!r} is not a groupBy key of this billable metric (its keys: {allowed}).",
                    code="UNKNOWN_GROUP_BY_KEY",
                )
        try:
            result = aggregate(
                merchant=request.merchant,
                metric=metric,
                start=query["start"],
                end=query["end"],
                customer_id=query["customer_id"],
                group_by=query["group_by"] or None,
                window=query["window"],
            )
        except TooManyWindows:
            raise FieldError(
                "windowSize",
                f"the range holds more than {MAX_WINDOWS} {query['window']} windows; use a larger window size "
                "or a shorter range.",
                code="RANGE_TOO_LONG",
            ) from None
        timestamp = serializers.DateTimeField().to_representation
        return Response(
            {
                "object": "meter",
                "billableMetricId": str(metric.id),
                "aggregation": metric.aggregation,
                "from": timestamp(query["start"]),
                "to": timestamp(query["end"]),
                "windowSize": query["window"],
                "totalValue": format_value(result.total),
                "windowedValues": [
                    {"windowStart": timestamp(start), "windowEnd": timestamp(end), "value": format_value(value)}
                    for start, end, value in result.windows
                ],
                "groupedValues": [
                    {"group": group["group"], "value": format_value(group["value"])} for group in result.groups
                ],
            }
        )


# --- usage: POST/GET /v0/usage, /v0/usage/batch, /v0/usage/{id}; disputes ---------------------

TAGS = ["usage"]


def _datetime_param(request, name: str):
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise FieldError(name, f"must be an ISO 8601 date-time with a time zone, got {raw!r}", code="INVALID_TIMESTAMP")
    return value


class UsageApi(ApiView):
    """Usage carries its own idempotencyKey in the body; the header does not apply."""

    idempotent = False
    plain_post = True  # POST is served by plain_json_post (see dispatch)

    def dispatch(self, request, *args, **kwargs):
        if request.method == "POST":
            return plain_json_post(
                request,
                lambda merchant, data: (201, usage_record_combined(merchant=merchant, raw=data)),
                authenticate=merchant_for_request,
            )
        return super().dispatch(request, *args, **kwargs)

    @api_errors(
        {
            402: "INSUFFICIENT_BALANCE: the wallet cannot pay the charge (nothing moves; top up and retry with the same "
            "idempotencyKey); ENTITLEMENT_EXHAUSTED: beyond what the named entitlement has left",
            404: "CUSTOMER_NOT_FOUND, BILLABLE_METRIC_NOT_FOUND, SUBSCRIPTION_NOT_FOUND, ENTITLEMENT_NOT_FOUND: an id "
            "in the body names nothing of this merchant in this mode",
            409: "IDEMPOTENCY_KEY_REUSED: the idempotencyKey was used for another event; IDEMPOTENCY_KEY_IN_USE: "
            "contended, retry; NO_ACTIVE_SUBSCRIPTION; AMBIGUOUS_SUBSCRIPTION: several active subscriptions price the "
            "metrics, name one with subscriptionId",
            422: "USAGE_OUTSIDE_OPEN_PERIOD (details name the window), METRIC_NOT_PRICED, CUSTOMER_ARCHIVED, "
            "METRIC_VALUE_MISSING, METRIC_VALUE_NOT_NUMERIC, METRIC_NOT_ENTITLED, ENTITLEMENT_SUBSCRIPTION_MISMATCH, "
            "PRICE_OVERRIDE_NOT_ALLOWED, PRICE_OVERRIDE_NOT_INSTANT, PRICE_OVERRIDE_WITH_ENTITLEMENT, and the other "
            "rules that depend on stored data",
        }
    )
    @extend_schema(
        operation_id="usage_create",
        request=inline_serializer(
            "UsageEventInput",
            {
                "idempotencyKey": serializers.CharField(),
                "customerId": serializers.UUIDField(),
                "merchantId": serializers.CharField(required=False),
                "timestamp": serializers.DateTimeField(required=False),
                "properties": serializers.ListField(child=serializers.DictField()),
                "entitlementId": serializers.UUIDField(required=False),
                "subscriptionId": serializers.UUIDField(required=False),
                "metadata": serializers.DictField(required=False),
            },
        ),
        responses={201: UsageEventSchema},
        tags=TAGS,
    )
    def post(self, request):
        # Served by `dispatch` without DRF (the hot path); kept for the OpenAPI document.
        return Response(usage_record_combined(merchant=request.merchant, raw=request.data), status=201)

    @extend_schema(
        operation_id="usage_list",
        parameters=[
            OpenApiParameter("customerId", str),
            OpenApiParameter("billableMetricId", str),
            OpenApiParameter("subscriptionId", str),
            OpenApiParameter("from", str, description="ISO 8601, inclusive"),
            OpenApiParameter("to", str, description="ISO 8601, exclusive"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=UsageEventDetailSchema(many=True),
        tags=TAGS,
    )
    def get(self, request):
        start, end = _datetime_param(request, "from"), _datetime_param(request, "to")
        if start and end and start >= end:
            raise FieldError("from", "must be before to", code="INVALID_RANGE")
        queryset = usage_event_list(
            merchant=request.merchant,
            customer_id=uuid_param(request, "customerId"),
            subscription_id=uuid_param(request, "subscriptionId"),
            metric_id=uuid_param(request, "billableMetricId"),
            start=start,
            end=end,
        )
        return self.paginated_response(queryset, _details)


class UsageBatchApi(ApiView):
    idempotent = False
    plain_post = True  # POST is served by plain_json_post (see dispatch)

    def dispatch(self, request, *args, **kwargs):
        if request.method == "POST":
            return plain_json_post(request, _record_batch, authenticate=merchant_for_request)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        operation_id="usage_batch_create",
        request=inline_serializer("UsageBatchInput", {"events": serializers.ListField(child=serializers.DictField())}),
        responses={
            201: OpenApiResponse(UsageBatchResultSchema, description="Every event was charged (or replayed)."),
            207: OpenApiResponse(
                UsageBatchResultSchema, description="Some events failed: each failure names its index and error."
            ),
        },
        tags=TAGS,
        description=f"Up to {MAX_BATCH_EVENTS} events; 201 when all succeed, 207 with each failure by index otherwise.",
    )
    def post(self, request):
        # Served by `dispatch` without DRF (the hot path); kept for the OpenAPI document.
        status, body = _record_batch(request.merchant, request.data)
        return Response(body, status=status)


def _record_batch(merchant, data):
    if not isinstance(data, dict):
        raise FieldError("body", 'must be a JSON object {"events": [...]}', code="INVALID_BODY")
    return usage_record_batch(merchant=merchant, raw_events=data.get("events"))


def _details(events) -> list[dict]:
    invoices = period_invoice_ids(events)
    return [usage_event_detail(e, list(e.lines.all()), invoices.get(e.id)) for e in events]


class UsageDetailApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        refund = serializers.BooleanField()
        reason = StrictCharField(max_length=500, required=False, allow_blank=True)

        def validate_refund(self, value):
            if value is not True:
                raise serializers.ValidationError('only {"refund": true} can be sent: a refund cannot be undone.')
            return value

    @extend_schema(operation_id="usage_get", responses=UsageEventDetailSchema, tags=TAGS)
    def get(self, request, event_id):
        event = usage_event_get(merchant=request.merchant, event_id=event_id)
        return Response(_details([event])[0])

    @api_errors({409: "USAGE_ALREADY_REFUNDED"})
    @extend_schema(operation_id="usage_refund", request=InputSerializer, responses=UsageEventDetailSchema, tags=TAGS)
    def patch(self, request, event_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = usage_event_get(merchant=request.merchant, event_id=event_id)
        usage_refund(merchant=request.merchant, event=event, reason=serializer.validated_data.get("reason", ""))
        event = usage_event_get(merchant=request.merchant, event_id=event_id)
        return Response(_details([event])[0])


class DisputeListApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        usageEventId = serializers.UUIDField()
        message = StrictCharField(max_length=5000)

    @api_errors(
        {
            404: "USAGE_EVENT_NOT_FOUND: usageEventId names no usage event of this merchant in this mode",
            409: "USAGE_ALREADY_REFUNDED: nothing to dispute; DISPUTE_ALREADY_OPEN: the event has an open dispute",
        }
    )
    @extend_schema(
        operation_id="disputes_create", request=InputSerializer, responses={201: DisputeSerializer}, tags=["disputes"]
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = usage_event_get(merchant=request.merchant, event_id=serializer.validated_data["usageEventId"])
        dispute = dispute_open(merchant=request.merchant, event=event, message=serializer.validated_data["message"])
        return Response(DisputeSerializer(dispute).data, status=201)

    @extend_schema(
        operation_id="disputes_list",
        parameters=[
            OpenApiParameter("status", str, enum=Dispute.Status.values),
            OpenApiParameter("customerId", str),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses=DisputeSerializer(many=True),
        tags=["disputes"],
    )
    def get(self, request):
        queryset = dispute_list(
            merchant=request.merchant,
            status=choice_param(request, "status", Dispute.Status.values),
            customer_id=uuid_param(request, "customerId"),
        )
        return self.paginated_response(queryset, lambda rows: DisputeSerializer(rows, many=True).data)


class DisputeDetailApi(ApiView):
    @extend_schema(operation_id="disputes_get", responses=DisputeSerializer, tags=["disputes"])
    def get(self, request, dispute_id):
        return Response(DisputeSerializer(dispute_get(merchant=request.merchant, dispute_id=dispute_id)).data)


class DisputeAcceptApi(ApiView):
    @api_errors({409: "DISPUTE_NOT_OPEN: it was already accepted or declined"})
    @extend_schema(operation_id="disputes_accept", request=None, responses=DisputeSerializer, tags=["disputes"])
    def post(self, request, dispute_id):
        dispute = dispute_get(merchant=request.merchant, dispute_id=dispute_id)
        return Response(DisputeSerializer(dispute_accept(merchant=request.merchant, dispute=dispute)).data)


class DisputeDeclineApi(ApiView):
    class InputSerializer(StrictInputSerializer):
        reason = StrictCharField(max_length=500)

    @api_errors({409: "DISPUTE_NOT_OPEN: it was already accepted or declined"})
    @extend_schema(
        operation_id="disputes_decline", request=InputSerializer, responses=DisputeSerializer, tags=["disputes"]
    )
    def post(self, request, dispute_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dispute = dispute_get(merchant=request.merchant, dispute_id=dispute_id)
        dispute = dispute_decline(
            merchant=request.merchant, dispute=dispute, reason=serializer.validated_data["reason"]
        )
        return Response(DisputeSerializer(dispute).data)
