"""OpenAPI generation: views nest their input serializer as `InputSerializer`, so name each
request component after its view (SubscriptionListApi -> SubscriptionListInput)."""

from drf_spectacular.openapi import AutoSchema


class ApiAutoSchema(AutoSchema):
    def _get_serializer_name(self, serializer, direction, bypass_extensions=False):
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        serializer_class = serializer if isinstance(serializer, type) else type(serializer)
        if serializer_class.__name__ == "InputSerializer" and "." in serializer_class.__qualname__:
            owner = serializer_class.__qualname__.split(".")[0].removesuffix("Api")
            return f"{owner}Input" + name.removeprefix("Input")
        return name
