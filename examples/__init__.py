"""Runnable workflows from the seed articles, offline by default (`bridge demo` runs one)."""
