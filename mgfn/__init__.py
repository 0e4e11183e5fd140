"""MGFN (Magnitude-Contrastive Glance-and-Focus Network) on cached clip features: model, losses, training, evaluation."""
