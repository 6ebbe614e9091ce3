"""orders: counts by status kept by triggers, so a list's total is not a scan of orders

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

`GET /v1/orders` answers `X-Total-Count`; counted with count(*), every page read every
order. Statement-level triggers keep the number of orders per status in 16 slots (an
order's slot is its id mod 16), so concurrent writers seldom wait on the same counter
row; a total is the sum of 64 rows. The rows all exist (a new status needs its rows
added by its migration), and are updated in (status, slot) order.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE order_counts (
            status text NOT NULL,
            slot smallint NOT NULL CONSTRAINT order_counts_slot_range CHECK (slot BETWEEN 0 AND 15),
            orders bigint NOT NULL CONSTRAINT order_counts_not_negative CHECK (orders >= 0),
            PRIMARY KEY (status, slot)
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION order_counts_add(deltas jsonb) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE d record;
        BEGIN
            -- One UPDATE per counter, in (status, slot) order: every writer takes the
            -- counter rows' locks in the same order, so two can never deadlock on them.
            FOR d IN SELECT * FROM jsonb_to_recordset(deltas)
                         AS x(status text, slot smallint, delta bigint)
                     WHERE delta <> 0 ORDER BY status, slot
            LOOP
                UPDATE order_counts SET orders = orders + d.delta
                WHERE status = d.status AND slot = d.slot;
            END LOOP;
        END $$;

        CREATE FUNCTION order_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM order_counts_add((
                SELECT jsonb_agg(jsonb_build_object('status', status, 'slot', slot, 'delta', n))
                FROM (SELECT status, id % 16 AS slot, count(*) AS n FROM inserted_rows
                      GROUP BY 1, 2) c
            ));
            RETURN NULL;
        END $$;

        CREATE FUNCTION order_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM order_counts_add((
                SELECT jsonb_agg(jsonb_build_object('status', status, 'slot', slot, 'delta', n))
                FROM (
                    SELECT status, slot, sum(delta) AS n FROM (
                        SELECT n.status, n.id % 16 AS slot, 1 AS delta
                        FROM old_rows o JOIN new_rows n USING (id) WHERE o.status <> n.status
                        UNION ALL
                        SELECT o.status, o.id % 16, -1
                        FROM old_rows o JOIN new_rows n USING (id) WHERE o.status <> n.status
                    ) moves GROUP BY 1, 2
                ) c
            ));
            RETURN NULL;
        END $$;

        CREATE FUNCTION order_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM order_counts_add((
                SELECT jsonb_agg(jsonb_build_object('status', status, 'slot', slot, 'delta', -n))
                FROM (SELECT status, id % 16 AS slot, count(*) AS n FROM deleted_rows
                      GROUP BY 1, 2) c
            ));
            RETURN NULL;
        END $$;

        CREATE TRIGGER orders_count_inserted AFTER INSERT ON orders
            REFERENCING NEW TABLE AS inserted_rows
            FOR EACH STATEMENT EXECUTE FUNCTION order_counts_inserted();
        CREATE TRIGGER orders_count_updated AFTER UPDATE ON orders
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION order_counts_updated();
        CREATE TRIGGER orders_count_deleted AFTER DELETE ON orders
            REFERENCING OLD TABLE AS deleted_rows
            FOR EACH STATEMENT EXECUTE FUNCTION order_counts_deleted();
        """
    )
    # Every counter exists from the start (the triggers only update), counted under a
    # lock that lets reads through but no write in between.
    op.execute("LOCK TABLE orders IN SHARE MODE")
    op.execute(
        """
        INSERT INTO order_counts (status, slot, orders)
        SELECT s.status, slot, count(o.id)
        FROM unnest(ARRAY['pending', 'confirmed', 'rejected', 'cancelled']) AS s(status)
        CROSS JOIN generate_series(0, 15) AS slot
        LEFT JOIN orders o ON o.status = s.status AND o.id % 16 = slot
        GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER orders_count_inserted ON orders")
    op.execute("DROP TRIGGER orders_count_updated ON orders")
    op.execute("DROP TRIGGER orders_count_deleted ON orders")
    op.execute("DROP FUNCTION order_counts_inserted, order_counts_updated, order_counts_deleted")
    op.execute("DROP FUNCTION order_counts_add")
    op.execute("DROP TABLE order_counts")
