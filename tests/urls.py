from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("control/send", views.send),
    path("control/sync-send", views.sync_send),
    path("control/close", views.close),
    path("control/script", views.script),
    path("control/feed-add", views.feed_add),
    path("control/count/<str:execution_id>", views.count),
    path("control/hub", views.hub_stats),
    path("control/residue", views.residue),
    path("control/objects", views.objects),
    path("control/login", views.login),
    path("control/fragments", views.fragment_stats),
    path("test/htmx/<str:execution_id>", views.htmx_page),
    path("test/htmx4/<str:execution_id>", views.htmx4_page),
    path("test/htmx-many/<str:ids>", views.htmx_many_page),
    path("test/htmx-csp/<str:ids>", views.htmx_csp_page),
    path("control/lease-producer", views.lease_producer),
    path("control/lease-producer-kill", views.lease_producer_kill),
    path("", include("example_project.urls")),
]
