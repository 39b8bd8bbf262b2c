import time

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import Unprocessable
from tests.tenancy_app.models import Widget, WidgetCall


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
        fail = serializers.ChoiceField(choices=["", "422", "500"], required=False, default="")

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
        widget = Widget.objects.create(merchant=request.merchant, name=data.validated_data["name"])
        return Response(WidgetSerializer(widget).data, status=201)


class WidgetDetailApi(ApiView):
    @extend_schema(exclude=True)
    def get(self, request, widget_id):
        widget = get_object_or_404(Widget, pk=widget_id, merchant=request.merchant)
        return Response(WidgetSerializer(widget).data)
