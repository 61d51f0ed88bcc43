"""Distillation: the truncated teacher and its targets, student initialisation, the layer losses."""
