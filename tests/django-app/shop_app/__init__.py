"""shop-app: the sample Django project that deploy's tests ship (see ../README.md)."""
