"""How each API's `python -m <service>` serves it (the images' command)."""

from __future__ import annotations


def serve(factory: str, *, host: str, port: int) -> None:
    """Run the app that `factory` ("module:function") builds under uvicorn until stopped."""
    # Imported here: servicekit is also used by processes that serve no HTTP.
    import uvicorn

    uvicorn.run(factory, factory=True, host=host, port=port, server_header=False)
