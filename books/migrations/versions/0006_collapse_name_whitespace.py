"""titles and authors trimmed with their whitespace runs collapsed, as new ones are stored

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Since this revision the API stores `"  The   Great  Gatsby "` as `"The Great Gatsby"` (the
predecessor's rule), so the `q` search and the author filter compare normalized text;
rows written before it are brought to the same form here. Descriptions are left alone:
they keep their line breaks.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLLAPSED = "btrim(regexp_replace({column}, '[[:space:]]+', ' ', 'g'))"


def upgrade() -> None:
    title, author = (_COLLAPSED.format(column=column) for column in ("title", "author"))
    op.execute(
        f"UPDATE books SET title = {title}, author = {author} "
        f"WHERE title <> {title} OR author <> {author}"
    )


def downgrade() -> None:
    # The spacing that was collapsed is not kept anywhere; the normalized text stays.
    pass
