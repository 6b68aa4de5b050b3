from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="demo-index"),
    path("demo/executions", views.start_execution, name="demo-start"),
]
