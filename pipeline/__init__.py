"""Stages, resume, CLI, datasets and reports: the only package that imports both `extractors` and `mgfn`."""
