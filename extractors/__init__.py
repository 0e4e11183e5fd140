"""Raw video to clip features: decoding, 16-frame clips, crops, I3D models and their weights."""


def __getattr__(name: str):
    # `extractors.load_model` / `extractors.EXTRACTORS` without importing torch for `import extractors`
    if name in ("load_model", "EXTRACTORS"):
        from extractors import models

        return getattr(models, name)
    raise AttributeError(f"module 'extractors' has no attribute {name!r}")
