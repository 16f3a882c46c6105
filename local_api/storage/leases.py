"""A named lease in the ``leases`` table: one holder at a time across API instances.

The holder renews it well before it lapses; an instance that dies stops renewing, and once
``expires_at`` has passed another one takes it (one winner however many race: the update is
conditional, and of two inserts of the same name the database refuses the second).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, delete, or_, update
from sqlalchemy.exc import IntegrityError

from local_api.storage import schema
from local_api.timeutil import utcnow


class Lease:
    """The lease ``name`` as seen by ``owner``; each call is one short transaction."""

    def __init__(self, db: Engine, name: str, owner: str) -> None:
        self.db, self.name, self.owner = db, name, owner

    def acquire(self, ttl: float) -> bool:
        """Renew it if ours, take it if free or lapsed; True when we hold it for ``ttl`` s."""
        table, now = schema.leases, utcnow()
        until = now + timedelta(seconds=ttl)
        with self.db.begin() as conn:
            taken = conn.execute(update(table).where(
                table.c.name == self.name,
                or_(table.c.holder == self.owner, table.c.expires_at < now),
            ).values(holder=self.owner, expires_at=until)).rowcount
        if taken:
            return True
        try:
            with self.db.begin() as conn:
                conn.execute(table.insert().values(name=self.name, holder=self.owner,
                                                   expires_at=until))
        except IntegrityError:  # the row exists: someone else holds it
            return False
        return True

    def release(self) -> None:
        """Give it up now (a clean stop), so another instance takes it at its next try."""
        table = schema.leases
        with self.db.begin() as conn:
            conn.execute(delete(table).where(table.c.name == self.name,
                                             table.c.holder == self.owner))

    def holder(self) -> str | None:
        """Who holds it now (None when free or lapsed)."""
        table = schema.leases
        with self.db.connect() as conn:
            row = conn.execute(table.select().where(table.c.name == self.name)).mappings().first()
        if row is None:
            return None
        expires = row["expires_at"]
        if expires.tzinfo is None:  # SQLite hands back naive UTC
            expires = expires.replace(tzinfo=utcnow().tzinfo)
        return str(row["holder"]) if expires > utcnow() else None
