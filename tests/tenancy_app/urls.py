from django.urls import path

from tests.tenancy_app.apis import WidgetDetailApi, WidgetListApi

urlpatterns = [
    path("widgets", WidgetListApi.as_view()),
    path("widgets/<uuid:widget_id>", WidgetDetailApi.as_view()),
]
