"""Corpus recipes: each turns one corpus's own published metadata layout into ALP manifests.

One module per corpus; all share :mod:`alp_data.recipes.common` (CSV reading, audio header
probing, the missing-file budget, the prepare report). They register as data sources in
``alp_data.plugin`` and run as ``alp data prepare SOURCE --root ROOT --out DIR``.
"""
