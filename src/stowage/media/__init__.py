"""Media: image derivatives (thumbnails, transforms) of stored files, and their cache.

The use cases live in ``services.py``; all SQL in ``repository.py``. The pixel work is the pure
``stowage.images`` library; access is decided by whoever opened the source (the read path, a share
link's visitor), so a derivative is readable exactly where its file is.
"""
