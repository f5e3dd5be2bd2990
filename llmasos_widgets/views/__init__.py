"""Views: anywidget widgets over the analyses' results.

The protocol every view shares, the wire format, offline export, one module per view, and the Explorer.
"""
