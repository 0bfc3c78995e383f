"""Thin deployable units; each composes constructs from components/."""
