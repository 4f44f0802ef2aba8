"""What the reader sees: one module per chapter, plus the shared style and explorer machinery.

``style`` sets the book's look (palette, rcParams, tables, glue); ``explorer``
holds the live panel and its offline HTML twin; ``chN_...`` holds chapter N's
figures, explorers and ``numbers(...)``, the numbers its prose quotes. A
notebook imports its own chapter module; no chapter module imports another,
and the science modules (``rpbook.masks``, ``rpbook.train``, ...) never import
this package.
"""
