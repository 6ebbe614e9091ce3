"""The storefront and the librarian's desk: server-rendered pages on the public APIs."""
