"""Raw video to clip features: decoding, 16-frame clips, crops, I3D models and their weights."""
