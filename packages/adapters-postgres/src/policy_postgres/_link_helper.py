"""The decision log's link helper process (see policy_postgres._linker): `python -m` this."""

from policy_postgres._linker import serve

if __name__ == "__main__":
    serve()
