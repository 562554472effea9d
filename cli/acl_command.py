"""``embedq acl``: the Redis ACL users of each role, printed or applied to a server.

Printed as ``ACL SETUSER`` lines (for redis-cli, or an ACL file without the ``ACL SETUSER``
prefix), each after a comment saying which process connects as that user. Passwords never
appear: rules hold their SHA-256 digests; ``--passwords FILE`` keeps the passwords themselves
(new users get random ones). The admin URL is best given as ``--apply env`` with
``EMBEDQ_ACL_ADMIN_URL`` set, which ``ps`` does not show.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.ops.acl import AclUser, acl_users
from embedq.ops.acl_setup import apply, passwords_for

_WHO = {"producer": "web apps and `embedq gateway` with EMBEDQ_PRODUCER_ID={id}",
        "worker": "`embedq worker` serving {id}",
        "dashboard": "`embedq dashboard`",
        "flower": "Flower (celery -A embedq.ops.flower_app flower)",
        "dead-letters": "`embedq dead-letters` run by an operator"}


def _producers(specs: tuple[str, ...]) -> dict[str, list[str] | None]:
    producers: dict[str, list[str] | None] = {}
    for spec in specs:
        name, equals, cases = spec.partition("=")
        producers[name] = [c for c in cases.split(",") if c] if equals else None
    return producers


def _comment(user: AclUser) -> str:
    who = user.name.removeprefix(f"embedq-{user.role}-")
    return (f"# {user.role}: {_WHO[user.role].format(id=who)}; its URL: "
            f"rediss://{user.name}:<password>@HOST:PORT/0")


@click.command("acl")
@click.option("--producer", "producer_specs", multiple=True, metavar="ID[=USE_CASE,...]",
              help="A producer id (EMBEDQ_PRODUCER_ID of its processes), optionally limited to "
                   "use cases; repeatable.")
@click.option("--passwords", "passwords_file", type=click.Path(path_type=Path), default=None,
              help="File of 'user password' lines; missing users get random passwords.")
@click.option("--apply", "admin_url", default=None, metavar="ADMIN_URL",
              help="Apply the rules to this Redis (a user allowed ACL); 'env' reads the URL "
                   "from EMBEDQ_ACL_ADMIN_URL, which `ps` does not show.")
@click.option("--db", type=int, default=0, show_default=True,
              help="The database the Celery event channels are named after.")
def acl(producer_specs: tuple[str, ...], passwords_file: Path | None, admin_url: str | None,
        db: int) -> None:
    """Print (or --apply) one Redis ACL user per role, from the route table."""
    settings = load_settings()
    if admin_url == "env":
        admin_url = os.environ.get("EMBEDQ_ACL_ADMIN_URL")
        if not admin_url:
            raise click.UsageError("--apply env: EMBEDQ_ACL_ADMIN_URL is not set")
    users = acl_users(load_registry(settings.config_dir), _producers(producer_specs), db=db)
    passwords = passwords_for(passwords_file, users) if passwords_file is not None else {}
    if admin_url is not None and not passwords:
        raise click.UsageError("--apply needs --passwords FILE (users without a password "
                               "could not log in)")
    for user in users:
        click.echo(_comment(user))
        click.echo(user.line(passwords.get(user.name)))
    if admin_url is not None:
        apply(admin_url, users, passwords)
        click.echo(f"# applied {len(users)} users", err=True)
