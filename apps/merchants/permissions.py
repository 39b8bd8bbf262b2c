"""What a merchant's staff may do in the admin: the permissions of the "Merchant staff" group.

Each ModelAdmin (and inline) of a tenant model declares `staff_permissions`, the actions
("view", "add", "change") its merchant staff need on that model; nothing else is granted, and
never "delete". The group is made to hold exactly the union of those declarations after every
`migrate` (a post_migrate receiver, so no command is needed, and the set follows the code).
Staff users created through `merchant_staff_create` or the admin's user page join the group.

"change" on an admin whose forms are read-only (ReadOnlyMixin) is what its actions need:
refunding usage, releasing a hold, accepting a dispute (see ServiceAdminMixin).
"""

from django.apps import apps as global_apps
from django.contrib import admin
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.db.models import Q

MERCHANT_STAFF_GROUP = "Merchant staff"
STAFF_ACTIONS = ("view", "add", "change")


def staff_permissions_declared(site: admin.AdminSite = admin.site) -> set[tuple[str, str]]:
    """(app_label, codename) of every permission the registered admins give merchant staff."""
    declared = set()
    for model, model_admin in site._registry.items():
        for owner, declaring in [(model, model_admin), *((inline.model, inline) for inline in model_admin.inlines)]:
            for action in getattr(declaring, "staff_permissions", ()):
                if action not in STAFF_ACTIONS:
                    name = getattr(declaring, "__name__", type(declaring).__name__)
                    raise ValueError(f"{name}: merchant staff are given only {STAFF_ACTIONS}, not {action!r}")
                declared.add((owner._meta.app_label, f"{action}_{owner._meta.model_name}"))
    return declared


def merchant_staff_group_sync(*, using: str = DEFAULT_DB_ALIAS) -> Group:
    """Make the "Merchant staff" group hold exactly the declared permissions."""
    wanted = staff_permissions_declared()
    match = Q(pk__in=[])
    for app_label, codename in wanted:
        match |= Q(content_type__app_label=app_label, codename=codename)
    with transaction.atomic(using=using):
        group, _ = Group.objects.using(using).get_or_create(name=MERCHANT_STAFF_GROUP)
        group.permissions.set(Permission.objects.using(using).filter(match))
    return group


def merchant_staff_group(*, using: str = DEFAULT_DB_ALIAS) -> Group:
    group = Group.objects.using(using).filter(name=MERCHANT_STAFF_GROUP).first()
    return group if group is not None else merchant_staff_group_sync(using=using)


def sync_after_migrate(sender, using=DEFAULT_DB_ALIAS, apps=global_apps, **kwargs) -> None:
    """post_migrate receiver: the permissions of every app exist (Django creates them app by
    app, this runs for the merchants app, before later apps'), then the group is set."""
    try:
        state_group = apps.get_model("auth", "Group")
    except LookupError:
        return  # migrated back to before auth
    if not router.allow_migrate_model(using, state_group):
        return
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
    merchant_staff_group_sync(using=using)
