import time

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import Unprocessable
from tests.tenancy_app.models import Widget, WidgetCall

# names whose request met its one outage already
OUTAGES: set[str] = set()


class WidgetSerializer(serializers.ModelSerializer):
    livemode = serializers.BooleanField(read_only=True)

    class Meta:
        model = Widget
        fields = ["id", "name", "livemode"]


class WidgetListApi(ApiView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        merchantId = serializers.UUIDField(required=False)
        sleep = serializers.FloatField(required=False, default=0)
        fail = serializers.ChoiceField(choices=["", "422", "500", "redis", "database"], required=False, default="")

    @extend_schema(exclude=True)
    def get(self, request):
        queryset = Widget.objects.filter(merchant=request.merchant).order_by("created_at", "id")
        return self.paginated_response(queryset, lambda rows: WidgetSerializer(rows, many=True).data)

    @extend_schema(exclude=True)
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        WidgetCall.objects.create(idempotency_label=data.validated_data["name"])
        if data.validated_data["sleep"]:
            time.sleep(data.validated_data["sleep"])
        if data.validated_data["fail"] == "422":
            raise Unprocessable("widgets named like this are refused", code="WIDGET_REFUSED")
        if data.validated_data["fail"] == "500":
            raise RuntimeError("simulated bug")
        # an outage happens once per name (this process): the same request sent again runs
        outage = data.validated_data["fail"] in ("redis", "database") and data.validated_data["name"] not in OUTAGES
        if outage:
            OUTAGES.add(data.validated_data["name"])
        if outage and data.validated_data["fail"] == "redis":
            # a Redis that does not answer (nothing listens on a free port)
            import redis

            from billing_platform.devservers import free_port

            redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1).incr("widgets")
        if outage and data.validated_data["fail"] == "database":
            # this request's database connection dropped (as pg_terminate_backend does it)
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        widget = Widget.objects.create(merchant=request.merchant, name=data.validated_data["name"])
        return Response(WidgetSerializer(widget).data, status=201)


class WidgetDetailApi(ApiView):
    @extend_schema(exclude=True)
    def get(self, request, widget_id):
        widget = get_object_or_404(Widget, pk=widget_id, merchant=request.merchant)
        return Response(WidgetSerializer(widget).data)


class WidgetCallOutApi(WidgetListApi):
    """The same handler, as a view that calls a network service declares itself: outside any
    transaction, its Idempotency-Key held by an advisory lock."""

    calls_out = True

    @extend_schema(exclude=True)
    def post(self, request):
        from django.db import connection

        WidgetCall.objects.create(idempotency_label=f"in_atomic_block={connection.in_atomic_block}")
        return super().post(request)
