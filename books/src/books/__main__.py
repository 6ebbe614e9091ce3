"""`python -m books`: the API at BOOKS_HOST:BOOKS_PORT (the predecessor's `PORT` works
too); what the image runs."""

from books.config import get_settings
from servicekit.asgi import serve

if __name__ == "__main__":
    settings = get_settings()
    serve("books.app:create_app", host=settings.host, port=settings.port)
