"""The data path, in order: index files -> manifest (manifest.py; demo.py draws a demo set,
pack.py packs JPEG bytes into shards) -> work units (source.py) -> Ray Data decode stream
(stream.py, decoding with decode.py, counting bad rows in ledger.py)."""
