"""Small shared helpers: atomic files, hashing, paths, logging."""
