"""`python -m web`: the site at WEB_HOST:WEB_PORT (what the image runs).
`python -m web staff add NAME`: create or reset a staff account (password from stdin or a
prompt); `python -m web staff remove NAME`."""

from __future__ import annotations

import argparse
import getpass
import sys

from servicekit.asgi import serve
from web.config import get_settings
from web.staff import StaffError, StaffStore


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise StaffError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    staff = commands.add_parser("staff", help="manage staff accounts").add_subparsers(
        dest="action", required=True
    )
    staff.add_parser("add", help="create or reset an account").add_argument("name")
    staff.add_parser("remove", help="delete an account").add_argument("name")
    args = parser.parse_args(argv)
    if args.command is None:
        settings = get_settings()
        serve("web.app:create_app", host=settings.host, port=settings.port)
        return 0
    store = StaffStore(get_settings().staff_file)
    try:
        if args.action == "add":
            store.add(args.name, _password())
            print(f"staff account {args.name!r} saved in {store.path}")
        elif not store.remove(args.name):
            raise StaffError(f"no staff account named {args.name!r}")
        else:
            print(f"staff account {args.name!r} removed")
    except StaffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
