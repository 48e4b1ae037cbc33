"""Training the project's own classifiers into model bundles."""
