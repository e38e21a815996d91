"""Python client of the Parallax tuning service; see client.Client."""
from . import _stubs
from .client import Client, pb2, pb2_grpc


def stubs_origin():
    """Directory the generated stubs were loaded from."""
    return _stubs.load()[2]


__all__ = ["Client", "pb2", "pb2_grpc", "stubs_origin"]
