"""Test doubles that ship with the package (as ``numpy.testing`` and ``torch.testing`` do), for the tests and the
tools alike: ``fake_tensorrt``, a fake TensorRT module over a fake GPU. Nothing here is imported by the runtime."""
