"""Paper tables reproduced from committed configs (``conf/paper/<table>.yaml``): run a
table's runs through any launcher, compare ours with the source's numbers, and write
``tables/<name>.md``, ``.csv`` and ``.tex``."""
