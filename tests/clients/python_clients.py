"""psycopg (3) and SQLAlchemy against one Phalanx node: tables, inserts, queries, a rolled-back
transaction, and an ORM model round trip. Usage: python3 python_clients.py HOST PORT.
Exits non-zero (with a traceback) on any mismatch."""

import sys

import psycopg
from sqlalchemy import Integer, String, create_engine, select, text
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
engine = create_engine(f"postgresql+psycopg://py@{host}:{port}/phalanx", use_native_hstore=False)
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
print("python clients ok")
