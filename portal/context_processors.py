from core.selectors import project_list_for_user


def navigation(request):
    """The roles a signed-in user holds anywhere, to build the role-aware navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    held = {role for p in project_list_for_user(user=user) for role in p.roles}
    return {"nav_roles": held}
