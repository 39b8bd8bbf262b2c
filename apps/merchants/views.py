from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.merchants.admin_base import SANDBOX_SESSION_KEY


@require_POST
@staff_member_required
def admin_switch_mode(request):
    """Switch the admin between the merchant's live data and its sandbox."""
    request.session[SANDBOX_SESSION_KEY] = request.POST.get("mode") == "sandbox"
    target = request.POST.get("next") or "/admin/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/admin/"
    return redirect(target)
