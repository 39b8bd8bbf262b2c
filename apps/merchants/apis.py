from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.merchants.serializers import MerchantSerializer


class MerchantMeApi(ApiView):
    @extend_schema(operation_id="merchants_me", responses=MerchantSerializer, tags=["merchants"])
    def get(self, request):
        return Response(MerchantSerializer(request.merchant).data)
