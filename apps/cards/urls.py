from django.urls import path

from apps.cards.views import stripe_webhook

urlpatterns = [path("stripe", stripe_webhook, name="stripe-webhook")]
