"""psycopg (3) and SQLAlchemy against one Phalanx node: tables, inserts, queries, a rolled-back
transaction, an ORM model round trip, and introspection (SQLAlchemy's inspector and table
reflection, psycopg's type lookups), which read pg_catalog. Usage: python3 python_clients.py HOST PORT.
Exits non-zero (with a traceback) on any mismatch."""

import sys

import psycopg
from psycopg.types import TypeInfo
from sqlalchemy import Integer, MetaData, String, Table, create_engine, inspect, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

host, port = sys.argv[1], int(sys.argv[2])
dsn = f"host={host} port={port} user=py dbname=phalanx"

# psycopg: autocommit DDL, a committed and a rolled-back transaction, parameters, types.
with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute("CREATE TABLE py_items (id SERIAL PRIMARY KEY, name TEXT NOT NULL, price NUMERIC, ok BOOLEAN)")
with psycopg.connect(dsn) as conn:  # not autocommit: psycopg opens transactions itself
    with conn.transaction():
        conn.execute("INSERT INTO py_items (name, price, ok) VALUES (%s, %s, %s)", ("apple", 1.5, True))
        conn.execute("INSERT INTO py_items (name, price, ok) VALUES (%s, %s, %s)", ("pear", 2, False))
    try:
        with conn.transaction():
            conn.execute("INSERT INTO py_items (name) VALUES (%s)", ("rolled back",))
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    rows = conn.execute("SELECT name, ok FROM py_items ORDER BY id").fetchall()
    assert rows == [("apple", True), ("pear", False)], rows
    try:
        conn.execute("INSERT INTO py_items (id, name) VALUES (1, 'duplicate')")
        raise AssertionError("a duplicate key must fail")
    except psycopg.errors.UniqueViolation:
        conn.rollback()
    count = conn.execute("SELECT count(*) FROM py_items").fetchone()[0]
    assert count == 2, count


# SQLAlchemy ORM on psycopg.
class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "py_people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


# No hstore lookup: pg_catalog type introspection is not there yet.
# No use_native_hstore=False: SQLAlchemy looks the hstore type up in pg_catalog on connect.
engine = create_engine(f"postgresql+psycopg://py@{host}:{port}/phalanx")
with engine.begin() as connection:
    connection.execute(text("CREATE TABLE py_people (id SERIAL PRIMARY KEY, name VARCHAR(50))"))
with Session(engine) as session:
    session.add_all([Person(name="ada"), Person(name="grace")])
    session.commit()
with Session(engine) as session:
    session.add(Person(name="never"))
    session.flush()
    session.rollback()
with Session(engine) as session:
    names = session.scalars(select(Person.name).order_by(Person.id)).all()
    assert names == ["ada", "grace"], names
    grace = session.scalars(select(Person).where(Person.name == "grace")).one()
    grace_id = grace.id
    grace.name = "grace hopper"
    session.commit()
with Session(engine) as session:
    assert session.get(Person, grace_id).name == "grace hopper"
# Introspection: psycopg's type lookups and SQLAlchemy's inspector read pg_catalog.
with psycopg.connect(dsn, autocommit=True) as conn:
    int8 = TypeInfo.fetch(conn, "int8")
    assert (int8.oid, int8.array_oid) == (20, 1016), int8
    assert TypeInfo.fetch(conn, "hstore") is None
    conn.execute(
        "CREATE TABLE py_orders (id BIGINT PRIMARY KEY, person_id INT REFERENCES py_people (id), "
        "code VARCHAR(12) UNIQUE, total NUMERIC(10,2) DEFAULT 0)"
    )
    conn.execute("CREATE INDEX py_orders_person ON py_orders (person_id)")
inspector = inspect(engine)
assert {"py_items", "py_people", "py_orders"} <= set(inspector.get_table_names())
columns = {c["name"]: c for c in inspector.get_columns("py_orders")}
assert list(columns) == ["id", "person_id", "code", "total"], columns
assert str(columns["code"]["type"]) == "VARCHAR(12)", columns["code"]
assert str(columns["total"]["type"]) == "NUMERIC(10, 2)", columns["total"]
assert columns["id"]["nullable"] is False and columns["person_id"]["nullable"] is True
assert columns["total"]["default"] == "0", columns["total"]
assert inspector.get_pk_constraint("py_orders")["constrained_columns"] == ["id"]
[foreign_key] = inspector.get_foreign_keys("py_orders")
assert (foreign_key["constrained_columns"], foreign_key["referred_table"], foreign_key["referred_columns"]) == (
    ["person_id"], "py_people", ["id"]), foreign_key
indexes = {i["name"]: i for i in inspector.get_indexes("py_orders")}
assert indexes["py_orders_person"]["column_names"] == ["person_id"], indexes
assert not indexes["py_orders_person"]["unique"]
assert [u["column_names"] for u in inspector.get_unique_constraints("py_orders")] == [["code"]]
reflected = Table("py_orders", MetaData(), autoload_with=engine)
with engine.begin() as connection:
    connection.execute(reflected.insert().values(id=1, person_id=grace_id, code="A-1"))
    assert connection.execute(select(reflected.c.total)).scalar_one() == 0
print("python clients ok")
