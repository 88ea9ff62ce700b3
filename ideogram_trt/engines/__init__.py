"""Engines stage: TensorRT / TensorRT-RTX plans per resolution bucket and the manifest that guards them."""
