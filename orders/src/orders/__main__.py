"""`python -m orders`: the API at ORDERS_HOST:ORDERS_PORT (the predecessor's `PORT` works
too); what the image runs."""

from orders.config import get_settings
from servicekit.asgi import serve

if __name__ == "__main__":
    settings = get_settings()
    serve("orders.app:create_app", host=settings.host, port=settings.port)
