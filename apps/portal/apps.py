from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The hosted customer portal: a face, like the checkout. It reads through the domain apps'
    selectors and acts through their services; no domain app imports it."""

    name = "apps.portal"
    label = "portal"
