"""Project-scoped pages and API of the serving app."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
