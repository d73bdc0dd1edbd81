"""The mobile pages, mounted at /m/ (namespace ``m``). Each area keeps its own URL list."""

from mobile import urls_core, urls_customers, urls_sidebar

app_name = "m"

urlpatterns = [*urls_core.urlpatterns, *urls_customers.urlpatterns, *urls_sidebar.urlpatterns]
