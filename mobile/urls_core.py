"""Mobile URLs of the core area: sign-in, today, my channel code (see mobile/urls.py)."""

from django.urls import URLPattern, path

from mobile.views import auth, code, today

urlpatterns: list[URLPattern] = [
    path("", today.today, name="today"),
    path("todos/<int:pk>/done/", today.todo_done, name="todo_done"),
    path("todos/<int:pk>/snooze/", today.todo_snooze, name="todo_snooze"),
    path("code/", code.my_code, name="code"),
    path("login/", auth.login_view, name="login"),
    path("login/wecom/", auth.login_wecom_view, name="login_wecom"),
    path("logout/", auth.logout_view, name="logout"),
]
