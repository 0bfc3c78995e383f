"""Thin deployable units; each composes constructs from components/ and asks the backend
(backends/) what to build. Below the app (app.py), above everything else of the product."""
