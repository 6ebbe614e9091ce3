"""every change of a book's stock is a movement in the ledger, written by the database

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Until now only reservations and releases were recorded; a stock set by creating or
updating a book was not, so the column could not be checked against anything. From here
on triggers on `books` write a movement for every change of `stock`, whoever makes it, so
the sum of a tracked book's movements (`delta`) is its stock:

- `opening` (+): tracking starts (a book created with stock, or null -> n);
- `reserve` (-) / `release` (+): an order's reservation, with its reference;
- `restock` (+) / `removal` (-): an adjustment (`POST /v1/books/{id}/stock-adjustments`),
  or an absolute stock set by PUT/PATCH of the book, with its reason;
- `untracked` (-): tracking stops (n -> null), so the sum starts again from 0.

The writer names the kind, reference and reason of its change in transaction-local
settings (`books.stock_kind`, `books.stock_reference`, `books.stock_reason`); without
them the trigger tells the kind from the values. Inserts are recorded by a statement
trigger (one INSERT ... SELECT for a COPY of a million books); updates by a row trigger
whose WHEN skips every update that leaves `stock` alone. Books tracked before this
revision get an `opening` (or `removal`) movement that makes their sum their stock.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KINDS = "'opening', 'reserve', 'release', 'restock', 'removal', 'untracked'"


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE stock_movements
            ALTER COLUMN reference DROP NOT NULL,
            DROP CONSTRAINT stock_movements_kind_known,
            ADD CONSTRAINT stock_movements_kind_known CHECK (kind IN ({KINDS})),
            ADD COLUMN reason text NULL,
            ADD COLUMN delta integer GENERATED ALWAYS AS (
                CASE WHEN kind IN ('reserve', 'removal', 'untracked') THEN -quantity
                     ELSE quantity END
            ) STORED,
            ADD CONSTRAINT stock_movements_reference_iff_reservation
                CHECK ((reference IS NOT NULL) = (kind IN ('reserve', 'release')))
        """
    )
    op.execute(
        """
        INSERT INTO stock_movements (book_id, kind, quantity, reason)
        SELECT b.id, CASE WHEN b.stock > moved THEN 'opening' ELSE 'removal' END,
               abs(b.stock - moved), 'the ledger opened'
        FROM books b
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(m.delta), 0) AS moved FROM stock_movements m
            WHERE m.book_id = b.id
        ) s
        WHERE b.stock IS NOT NULL AND b.stock <> moved
        """
    )
    op.execute(
        """
        CREATE FUNCTION stock_movement_kind(old_stock integer, new_stock integer) RETURNS text
        LANGUAGE sql STABLE AS $$
            SELECT coalesce(
                nullif(current_setting('books.stock_kind', true), ''),
                CASE WHEN old_stock IS NULL THEN 'opening'
                     WHEN new_stock IS NULL THEN 'untracked'
                     WHEN new_stock > old_stock THEN 'restock'
                     ELSE 'removal' END
            )
        $$;

        CREATE FUNCTION books_stock_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO stock_movements (book_id, kind, quantity, reason)
            SELECT id, 'opening', stock,
                   coalesce(nullif(current_setting('books.stock_reason', true), ''),
                            'the book was added with stock')
            FROM inserted_books WHERE stock > 0;
            RETURN NULL;
        END $$;

        CREATE FUNCTION books_stock_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            kind text := stock_movement_kind(OLD.stock, NEW.stock);
            delta integer := coalesce(NEW.stock, 0) - coalesce(OLD.stock, 0);
        BEGIN
            IF delta <> 0 THEN
                INSERT INTO stock_movements (reference, book_id, kind, quantity, reason)
                VALUES (
                    nullif(current_setting('books.stock_reference', true), ''),
                    NEW.id, kind, abs(delta),
                    CASE WHEN kind IN ('reserve', 'release') THEN NULL
                         ELSE coalesce(nullif(current_setting('books.stock_reason', true), ''),
                                       'stock set to ' || coalesce(NEW.stock::text, 'untracked')
                                       || ' by an update of the book') END
                );
            END IF;
            RETURN NULL;
        END $$;

        CREATE TRIGGER books_stock_ledger_inserted AFTER INSERT ON books
            REFERENCING NEW TABLE AS inserted_books
            FOR EACH STATEMENT EXECUTE FUNCTION books_stock_inserted();
        CREATE TRIGGER books_stock_ledger_updated AFTER UPDATE OF stock ON books
            FOR EACH ROW WHEN (OLD.stock IS DISTINCT FROM NEW.stock)
            EXECUTE FUNCTION books_stock_updated();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER books_stock_ledger_updated ON books;
        DROP TRIGGER books_stock_ledger_inserted ON books;
        DROP FUNCTION books_stock_updated();
        DROP FUNCTION books_stock_inserted();
        DROP FUNCTION stock_movement_kind(integer, integer);
        """
    )
    op.execute("DELETE FROM stock_movements WHERE kind NOT IN ('reserve', 'release')")
    op.execute(
        """
        ALTER TABLE stock_movements
            DROP CONSTRAINT stock_movements_reference_iff_reservation,
            DROP COLUMN delta,
            DROP COLUMN reason,
            DROP CONSTRAINT stock_movements_kind_known,
            ADD CONSTRAINT stock_movements_kind_known CHECK (kind IN ('reserve', 'release')),
            ALTER COLUMN reference SET NOT NULL
        """
    )
