"""Analyses that know nothing of views.

Attention, attribution, neurons and the logit lens, concepts, causal interventions, sparse autoencoders
and their features: plain functions and result objects, usable without a notebook.
"""
