"""Settings from the environment only (deploy's inventory `env` and the engine's DEPLOY_*)."""
import os

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "")  # Django refuses an empty one when it needs it
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.staticfiles", "shop_app.shop"]
MIDDLEWARE = []
ROOT_URLCONF = "shop_app.urls"
WSGI_APPLICATION = "shop_app.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("SHOP_DB_HOST", "db"),
        "PORT": 5432,
        "NAME": os.environ.get("SHOP_DB_NAME", "shop"),
        "USER": os.environ.get("SHOP_DB_USER", "shop"),
        "PASSWORD": os.environ.get("SHOP_DB_PASSWORD", ""),
        "OPTIONS": {"connect_timeout": 5},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DEPLOY_STATIC_ROOT")  # set by the engine for hooks
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                             "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"shop": {"level": "INFO"}},
}
