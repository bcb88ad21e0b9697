from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop_app.shop"
    label = "shop"
