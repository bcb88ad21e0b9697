from django.urls import path

from shop_app.shop import views

urlpatterns = [
    path("", views.index),
    path("healthz", views.healthz),
    path("version", views.version),
    path("items", views.items),
    path("log", views.log),
    path("orders", views.orders),
]
