from django.urls import path

from tests.tenancy_app.apis import WidgetCallOutApi, WidgetDetailApi, WidgetListApi

urlpatterns = [
    path("widgets", WidgetListApi.as_view()),
    path("widgets/outside", WidgetCallOutApi.as_view()),
    path("widgets/<uuid:widget_id>", WidgetDetailApi.as_view()),
]
