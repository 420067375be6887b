"""Headless replay of recorded sessions through the same parser and task code."""
