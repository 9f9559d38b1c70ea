"""Diagnostics that look in on training through the loop's hooks (dltrain/train/hooks.py)."""
